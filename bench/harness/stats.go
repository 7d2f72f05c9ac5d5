package harness

import (
	"math"
	"slices"
)

// Median of xs (the mean of the two middle values for an even count); NaN for
// none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of xs: the
// smallest value with at least p% of the values at or below it. NaN for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// PairedRatio is the median over rounds of num[i]/den[i]: each round's two
// measurements were taken minutes apart at most, so the ratio cancels most of the
// machine's drifting load. Rounds where either side is missing (NaN or <= 0)
// are skipped; NaN when none is left.
func PairedRatio(num, den []float64) float64 {
	var rs []float64
	for i := range min(len(num), len(den)) {
		if num[i] > 0 && den[i] > 0 && !math.IsNaN(num[i]) && !math.IsNaN(den[i]) {
			rs = append(rs, num[i]/den[i])
		}
	}
	return Median(rs)
}
