package policy

import (
	"errors"
	"fmt"
	"reflect"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
)

// celIdentity is the CEL variable `identity`.
type celIdentity struct {
	// Issuer is the policy name of the issuer ("okta", "github").
	Issuer    string   `cel:"issuer"`
	IssuerURL string   `cel:"issuer_url"`
	Subject   string   `cel:"subject"`
	Groups    []string `cel:"groups"`
	Human     bool     `cel:"human"`
	Dev       bool     `cel:"dev"`
}

// celTarget is the CEL variable `target`.
type celTarget struct {
	Name     string `cel:"name"`
	Kind     string `cel:"kind"`
	Database string `cel:"database"`
}

// celRequest is the CEL variable `request`.
type celRequest struct {
	Mode      string `cel:"mode"`
	Access    string `cel:"access"`
	Reason    string `cel:"reason"`
	Operation string `cel:"operation"`
}

// newEnv builds the CEL environment every condition compiles in. It holds no
// function that does I/O or reads the clock, so evaluation is pure.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeFor[celIdentity](),
			reflect.TypeFor[celTarget](),
			reflect.TypeFor[celRequest](),
			ext.ParseStructTags(true),
		),
		cel.Variable("identity", cel.ObjectType("policy.celIdentity")),
		cel.Variable("target", cel.ObjectType("policy.celTarget")),
		cel.Variable("request", cel.ObjectType("policy.celRequest")),
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
		cel.ParserExpressionSizeLimit(MaxExpressionBytes),
	)
}

// condition is a compiled `when`.
type condition struct {
	prg cel.Program
}

// compileError is a CEL error with its position inside the expression
// (line 1-based, column 0-based, as CEL reports them).
type compileError struct {
	line, col int
	msg       string
}

func compile(env *cel.Env, src string) (*condition, []compileError) {
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		var out []compileError
		for _, e := range iss.Errors() {
			line, col := 1, 0
			if e.Location != nil {
				line, col = e.Location.Line(), e.Location.Column()
			}
			out = append(out, compileError{line: line, col: col, msg: e.Message})
		}
		return nil, out
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, []compileError{{line: 1, col: 0, msg: fmt.Sprintf("condition must be a bool expression, got %s", ast.OutputType())}}
	}
	prg, err := env.Program(ast, cel.CostLimit(CostLimit))
	if err != nil {
		return nil, []compileError{{line: 1, col: 0, msg: err.Error()}}
	}
	return &condition{prg: prg}, nil
}

// eval runs the condition. A non-bool result or any evaluation error (a
// missing claim, the cost limit) is an error.
func (c *condition) eval(vars map[string]any) (bool, error) {
	out, _, err := c.prg.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errors.New("condition did not yield a bool")
	}
	return b, nil
}
