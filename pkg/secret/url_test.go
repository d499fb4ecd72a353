package secret

import "testing"

// The redacted form keeps what helps to fix the URL: scheme, host, path
// and query keys.
func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://127.0.0.1:8000/-/reload", "http://127.0.0.1:8000/-/reload"},
		{"ftp://h/r?token=SUPERSECRET", "ftp://h/r?token=REDACTED"},
		{"http://h/?a=1&b=&c", "http://h/?a=REDACTED&b=REDACTED&REDACTED"},
		{"https://user:pw@h:1/x", "https://h:1/x"},
		{"https://user:p/w@h/x?k=v#frag", "https://h/x?k=REDACTED#REDACTED"},
		{"user:pw@h/x", "h/x"},
		{"h/x?k=v@w", "h/x?k=REDACTED"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
