package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"path/filepath"
	"testing"
	"time"
)

// signJWT signs claims with ES256.
func signJWT(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT"})
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signing := enc(header) + "." + enc(body)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + enc(sig)
}

func publicPEM(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestJWTAuth logs in with Vault's jwt method against a locally generated
// key pair, the way Vault validates Kubernetes service-account tokens with
// jwt_validation_pubkeys.
func TestJWTAuth(t *testing.T) {
	d := vaultDev(t)
	f := newKVFixture(t, d)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mount := unique("jwt")
	d.enableAuth(t, mount, "jwt")
	d.write(t, "auth/"+mount+"/config", map[string]any{"jwt_validation_pubkeys": []string{publicPEM(t, key)}})
	d.write(t, "auth/"+mount+"/role/app", map[string]any{
		"role_type":       "jwt",
		"user_claim":      "sub",
		"bound_audiences": "phase-sidecar",
		"bound_subject":   "system:serviceaccount:default:app",
		"token_policies":  f.policy,
		"token_ttl":       "1h",
	})
	file := filepath.Join(t.TempDir(), "jwt")
	now := time.Now()
	writeFile(t, file, signJWT(t, key, map[string]any{
		"sub": "system:serviceaccount:default:app",
		"aud": "phase-sidecar",
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}))
	s := newSource(t, d, Config{Auth: Auth{Method: "jwt", Mount: mount, Role: "app", JWTFile: file}}, Options{})
	f.fetch(t, s)

	// A JWT for another subject is refused with an auth error.
	writeFile(t, file, signJWT(t, key, map[string]any{
		"sub": "system:serviceaccount:default:other", "aud": "phase-sidecar",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}))
	s = newSource(t, d, Config{Auth: Auth{Method: "jwt", Mount: mount, Role: "app", JWTFile: file}}, Options{})
	if _, err := s.Fetch(t.Context(), testenv.Ref(t, f.ref)); err == nil {
		t.Error("a JWT with the wrong subject logged in")
	}
}
