package sources

import (
	"errors"
	"testing"
)

func TestParseRefVaultQuery(t *testing.T) {
	tests := []struct {
		ref     string
		wantErr bool
		object  string
	}{
		{ref: "vault://secret/app?split=true", object: "vault://secret/app?split=true"},
		{ref: "vault://secret/app?split=false#a", object: "vault://secret/app?split=false"},
		{ref: "vault://secret/app?split=yes", wantErr: true},
		{ref: "vault://secret/app?version=3&split=true", object: "vault://secret/app?split=true&version=3"},
		{ref: "vault://pki/issue/web?common_name=web.example.com&ttl=1h#certificate", object: "vault://pki/issue/web?common_name=web.example.com&ttl=1h"},
		{ref: "vault://pki/issue/web?common_name=a.example&alt_names=b.example,c.example&ip_sans=127.0.0.1&uri_sans=spiffe://x/y", object: "vault://pki/issue/web?alt_names=b.example%2Cc.example&common_name=a.example&ip_sans=127.0.0.1&uri_sans=spiffe%3A%2F%2Fx%2Fy"},
		{ref: "vault://pki/issue/web?common_name=", wantErr: true},
		{ref: "vault://pki/issue/web?ttl=", wantErr: true},
		{ref: "vault://pki/issue/web?format=der", wantErr: true},
		{ref: "vault://secret/app?split=true&split=false", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			r, err := ParseRef(tt.ref)
			if tt.wantErr {
				if !errors.Is(err, ErrRef) {
					t.Fatalf("ParseRef(%q) error = %v, want ErrRef", tt.ref, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRef(%q): %v", tt.ref, err)
			}
			if got := r.Object(); got != tt.object {
				t.Errorf("Object() = %q, want %q", got, tt.object)
			}
		})
	}
}
