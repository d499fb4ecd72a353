package textdist

import (
	"math"
	"strings"
	"testing"
)

func TestLevenshtein(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"gunicorn", "gunicorn", 0},
		{"gunicorn", "gunicron", 2},
		{"refresh", "refersh", 2},
		{"kitten", "sitting", 3},
		{"nginx", "ngnix", 2},
		{strings.Repeat("a", 65), "a", math.MaxInt},
	}
	for _, tt := range tests {
		if got := Levenshtein(tt.a, tt.b); got != tt.want {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Levenshtein(tt.b, tt.a); got != tt.want {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d (symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}
