package guard

// ParsesForTest reports how many times g parsed SQL.
func ParsesForTest(g *Guard) int64 { return g.parses.Load() }
