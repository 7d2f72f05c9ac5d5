package dynamo

// Decode exposes the item decoder to the fuzz test.
var Decode = decode
