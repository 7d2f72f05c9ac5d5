package dynamo_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/store/dynamo"
)

// FuzzDecode: whatever an item holds, decode either refuses it or returns a
// grant whose id, state and version are exactly the item's attributes.
func FuzzDecode(f *testing.F) {
	f.Add("g_abc", "pending", "1", `{"id":"g_abc","state":"pending","version":1,"requester":"x"}`, []byte(nil))
	f.Add("g_abc", "approved", "2", `{"id":"g_abc","state":"pending","version":2}`, []byte(nil))
	f.Add("g_abc", "pending", "1", "", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add("../x", "ended", "3", `{"id":"../x","state":"ended","version":3}`, []byte(nil))
	f.Fuzz(func(t *testing.T, id, state, version, doc string, gz []byte) {
		item := map[string]types.AttributeValue{
			dynamo.AttrID:      &types.AttributeValueMemberS{Value: id},
			dynamo.AttrState:   &types.AttributeValueMemberS{Value: state},
			dynamo.AttrVersion: &types.AttributeValueMemberN{Value: version},
		}
		if doc != "" {
			item[dynamo.AttrDoc] = &types.AttributeValueMemberS{Value: doc}
		}
		if gz != nil {
			item[dynamo.AttrDocGzip] = &types.AttributeValueMemberB{Value: gz}
		}
		g, err := dynamo.Decode(item)
		if err != nil {
			return
		}
		if g.ID != id || !grant.ValidID(g.ID) || g.State.String() != state || !g.State.Valid() {
			t.Fatalf("decoded %q/%s from attributes %q/%q", g.ID, g.State, id, state)
		}
	})
}
