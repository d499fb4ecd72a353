package servers

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// kubeReadyWithin bounds etcd's and the API server's start: a cold
// kube-apiserver installs its bootstrap RBAC and priority levels first.
const kubeReadyWithin = 3 * time.Minute

// KubeServer is a real Kubernetes control plane for the tests: etcd and
// kube-apiserver, no controller-manager, scheduler or kubelet. Objects are
// stored, defaulted, validated and admitted (webhooks included); pods are
// never scheduled or run.
//
// Usage:
//
//	k := servers.Kube(t, t.TempDir())          // etcd + kube-apiserver, ready
//	k.Namespace(t, "app")                      // a namespace and its "default" ServiceAccount
//	k.ServiceAccount(t, "app", "backend")
//	k.BindClusterRole(t, "system:auth-delegator", "app", "reviewer")
//	jwt := k.ServiceAccountToken(t, "app", "backend", TokenOptions{Audiences: []string{"vault"}})
//	_, err := k.Apply(ctx, manifestYAML, ApplyOptions{DryRun: true, Namespace: "app"})
//	err = k.Do(ctx, "POST", "/api/v1/namespaces/app/pods", podJSON, &created)
//
// k.URL, k.CA (PEM), k.CAFile, k.Token, k.Kubeconfig (admin, for helm or
// kubectl) and k.HTTP (an *http.Client trusting k.CA) are what a client
// needs. Errors the server answers with are *KubeError, whose Message is the
// server's own text. k.As(token) is the same server seen with another token.
type KubeServer struct {
	URL        string       // https://127.0.0.1:PORT
	HostPort   string       // 127.0.0.1:PORT
	CA         []byte       // PEM of the CA that signed the serving certificate
	CAFile     string       // CA, as a file
	Token      string       // a bearer token of user admin, group system:masters
	Kubeconfig string       // a kubeconfig file for admin (context phase-test)
	HTTP       *http.Client // trusts CA; no token of its own
	Issuer     string       // the service-account token issuer (iss claim)

	disc *discovery // shared by As copies
}

// Kube starts etcd and kube-apiserver with their data, keys and logs in
// dir, and returns once /readyz answers 200. The binaries are
// PHASE_TEST_ETCD (or etcd on PATH) and PHASE_TEST_KUBE_APISERVER (built by
// test/tools/kube-apiserver.sh). Authentication is a static token file
// (Token) and service-account tokens; authorization is RBAC with the
// bootstrap roles (system:auth-delegator and the rest). On failure the tail
// of both logs is printed.
func Kube(t testing.TB, dir string) *KubeServer {
	t.Helper()
	etcdBin := testenv.Tool(t, "PHASE_TEST_ETCD", "etcd")
	apiBin := testenv.Tool(t, "PHASE_TEST_KUBE_APISERVER", "kube-apiserver")

	etcdLog := filepath.Join(dir, "etcd.log")
	apiLog := filepath.Join(dir, "kube-apiserver.log")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("etcd log:\n%s\nkube-apiserver log:\n%s", readLog(etcdLog, lastLines), readLog(apiLog, lastLines))
		}
	})

	// etcd: one member, no fsync (the data dies with the test).
	client, peer := testenv.Addr(t), testenv.Addr(t)
	etcdURL := "http://" + client
	Process(t, etcdLog, nil, etcdBin,
		"--name=phase-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls=http://"+peer, "--initial-advertise-peer-urls=http://"+peer,
		"--initial-cluster=phase-test=http://"+peer, "--unsafe-no-fsync", "--logger=zap", "--log-level=warn")
	waitUp(t, "etcd", etcdLog, kubeReadyWithin, nil, func() error {
		resp, err := http.Get(etcdURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !bytes.Contains(b, []byte(`"health":"true"`)) {
			return fmt.Errorf("etcd /health: %s", b)
		}
		return nil
	})

	port := testenv.FreePort(t)
	k := &KubeServer{
		HostPort: "127.0.0.1:" + strconv.Itoa(port),
		CAFile:   filepath.Join(dir, "ca.pem"),
		Issuer:   "https://kubernetes.default.svc.cluster.local",
		disc:     &discovery{lists: map[string][]apiResource{}},
	}
	k.URL = "https://" + k.HostPort
	k.Token = randomToken(t)
	certFile, keyFile := filepath.Join(dir, "apiserver.pem"), filepath.Join(dir, "apiserver-key.pem")
	k.CA = writeServingPKI(t, k.CAFile, certFile, keyFile)
	saKey, saPub := filepath.Join(dir, "sa-key.pem"), filepath.Join(dir, "sa.pem")
	writeSigningKey(t, saKey, saPub)
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, k.Token+`,admin,admin-uid,"system:masters"`+"\n", 0o600)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CA)
	k.HTTP = &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	t.Cleanup(k.HTTP.CloseIdleConnections)
	k.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := k.WriteKubeconfig(k.Kubeconfig, k.Token); err != nil {
		t.Fatal(err)
	}

	Process(t, apiLog, nil, apiBin,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--tls-cert-file="+certFile, "--tls-private-key-file="+keyFile, "--cert-dir="+dir,
		"--token-auth-file="+tokens, "--authorization-mode=RBAC", "--anonymous-auth=false",
		"--service-account-issuer="+k.Issuer,
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		// Nothing serves the kubernetes Service's endpoints (127.0.0.1 is
		// not a valid endpoint address), and no kubelet runs.
		"--endpoint-reconciler-type=none",
		"--profiling=false", "--v=1")
	waitUp(t, "kube-apiserver", apiLog, kubeReadyWithin, lastLines, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var out []byte
		return k.Do(ctx, http.MethodGet, "/readyz", nil, &out)
	})
	return k
}

// As returns k seen with another bearer token (a ServiceAccount's, say).
func (k *KubeServer) As(token string) *KubeServer {
	c := *k
	c.Token = token
	return &c
}

// WriteKubeconfig writes a kubeconfig for k with token as the user's
// credential; its context is phase-test, namespace default.
func (k *KubeServer) WriteKubeconfig(path, token string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: phase-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: phase-test
  user:
    token: %s
contexts:
- name: phase-test
  context:
    cluster: phase-test
    user: phase-test
    namespace: default
current-context: phase-test
`, k.URL, base64.StdEncoding.EncodeToString(k.CA), token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// KubeError is a request the API server refused, with the Status it
// answered: Reason is e.g. Invalid, NotFound, AlreadyExists, Forbidden,
// BadRequest; Message is the server's text.
type KubeError struct {
	Method, Path string
	Code         int
	Reason       string
	Message      string
}

func (e *KubeError) Error() string {
	return fmt.Sprintf("kube-apiserver: %s %s: %d %s: %s", e.Method, e.Path, e.Code, e.Reason, e.Message)
}

// IsKubeReason reports whether err is a *KubeError with reason.
func IsKubeReason(err error, reason string) bool {
	var ke *KubeError
	return errors.As(err, &ke) && ke.Reason == reason
}

// Do sends method path (with its query) to the server with k.Token. body
// is sent as JSON (a []byte as is, as JSON, or as YAML for an apply
// patch: see Apply); out, when not nil, receives the JSON answer (a
// *[]byte receives the raw body). An answer of 300 or more is a
// *KubeError.
func (k *KubeServer) Do(ctx context.Context, method, path string, body, out any) error {
	_, err := k.do(ctx, method, path, "application/json", body, out)
	return err
}

// do is Do with a content type, returning the response's warnings.
func (k *KubeServer) do(ctx context.Context, method, path, contentType string, body, out any) ([]string, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("kube-apiserver: %s %s: encode the body: %w", method, path, err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.URL+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+k.Token)
	req.Header.Set("Accept", "application/json")
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := k.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var warnings []string
	for _, w := range resp.Header.Values("Warning") {
		// "299 - \"text\"" (RFC 7234 warn-code, agent, quoted text).
		if _, text, ok := strings.Cut(w, " - "); ok {
			if s, err := strconv.Unquote(text); err == nil {
				w = s
			}
		}
		warnings = append(warnings, w)
	}
	if resp.StatusCode >= 300 {
		ke := &KubeError{Method: method, Path: path, Code: resp.StatusCode}
		var st struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &st) == nil && st.Message != "" {
			ke.Reason, ke.Message = st.Reason, st.Message
		} else {
			ke.Message = strings.TrimSpace(string(raw))
		}
		return warnings, ke
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = raw
	default:
		if err := json.Unmarshal(raw, out); err != nil {
			return warnings, fmt.Errorf("kube-apiserver: %s %s: decode the answer: %w", method, path, err)
		}
	}
	return warnings, nil
}

// create POSTs obj to path; an object that already exists is left as is.
func (k *KubeServer) create(t testing.TB, path string, obj map[string]any) {
	t.Helper()
	if err := k.Do(t.Context(), http.MethodPost, path, obj, nil); err != nil && !IsKubeReason(err, "AlreadyExists") {
		t.Fatal(err)
	}
}

// Namespace creates namespace name (when missing) and its default
// ServiceAccount, which the ServiceAccount admission plugin needs for pods
// and which no controller-manager creates here.
func (k *KubeServer) Namespace(t testing.TB, name string) {
	t.Helper()
	k.create(t, "/api/v1/namespaces", map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name},
	})
	k.ServiceAccount(t, name, "default")
}

// ServiceAccount creates ServiceAccount ns/name when missing.
func (k *KubeServer) ServiceAccount(t testing.TB, ns, name string) {
	t.Helper()
	k.create(t, "/api/v1/namespaces/"+url.PathEscape(ns)+"/serviceaccounts", map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": name, "namespace": ns},
	})
}

// BindClusterRole binds ClusterRole role to ServiceAccount ns/sa with a
// ClusterRoleBinding named after the three.
func (k *KubeServer) BindClusterRole(t testing.TB, role, ns, sa string) {
	t.Helper()
	name := strings.NewReplacer(":", "-").Replace(role) + "-" + ns + "-" + sa
	k.create(t, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": name},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": sa, "namespace": ns}},
	})
}

// TokenOptions are a TokenRequest's: the zero value asks for the API
// server's own audience and the shortest lifetime it grants (10 minutes).
type TokenOptions struct {
	Audiences  []string
	Expiration time.Duration // at least 10m
	// BoundKind and BoundName tie the token to an object of the
	// ServiceAccount's namespace (kind Pod or Secret): once the object is
	// deleted the token is refused, the way a projected token dies with its
	// pod.
	BoundKind, BoundName string
}

// ServiceAccountToken asks the TokenRequest API for a token of
// ServiceAccount ns/sa: the token a kubelet projects into a pod's
// serviceAccountToken volume.
func (k *KubeServer) ServiceAccountToken(t testing.TB, ns, sa string, o TokenOptions) string {
	t.Helper()
	if o.Expiration == 0 {
		o.Expiration = 10 * time.Minute
	}
	spec := map[string]any{"expirationSeconds": int64(o.Expiration / time.Second)}
	if len(o.Audiences) > 0 {
		spec["audiences"] = o.Audiences
	}
	if o.BoundKind != "" {
		spec["boundObjectRef"] = map[string]any{"apiVersion": "v1", "kind": o.BoundKind, "name": o.BoundName}
	}
	var tr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	path := "/api/v1/namespaces/" + url.PathEscape(ns) + "/serviceaccounts/" + url.PathEscape(sa) + "/token"
	if err := k.Do(t.Context(), http.MethodPost, path, map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec,
	}, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Status.Token == "" {
		t.Fatalf("TokenRequest for %s/%s: no token in the answer", ns, sa)
	}
	return tr.Status.Token
}

// ApplyOptions are a server-side apply's.
type ApplyOptions struct {
	// DryRun sends dryRun=All: the object is defaulted, validated and
	// admitted (webhooks included) but not stored.
	DryRun bool
	// Namespace is used for a namespaced object without
	// metadata.namespace; default "default".
	Namespace string
	// FieldManager defaults to "phase-sidecar-test"; conflicts are forced.
	FieldManager string
}

// Applied is what the server answered to an apply.
type Applied struct {
	Object   map[string]any // the object as stored (or as it would be)
	Warnings []string       // the server's Warning headers (deprecations)
}

// Apply server-side applies one manifest (YAML or JSON) with
// fieldValidation=Strict: unknown or duplicate fields are errors, as are
// schema and admission failures, each a *KubeError with the server's
// message. The resource is found through discovery by apiVersion and kind.
func (k *KubeServer) Apply(ctx context.Context, manifest []byte, o ApplyOptions) (*Applied, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(manifest, &obj); err != nil {
		return nil, fmt.Errorf("kube-apiserver: apply: decode the manifest: %w", err)
	}
	return k.apply(ctx, obj, o)
}

// ApplyAll applies each document of a multi-document YAML stream in order,
// stopping at the first error, which names the document's kind and name.
func (k *KubeServer) ApplyAll(ctx context.Context, manifests []byte, o ApplyOptions) ([]*Applied, error) {
	dec := yaml.NewDecoder(bytes.NewReader(manifests))
	var out []*Applied
	for i := 0; ; i++ {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("kube-apiserver: apply: decode document %d: %w", i, err)
		}
		if obj == nil {
			continue // an empty document
		}
		a, err := k.apply(ctx, obj, o)
		if err != nil {
			return out, fmt.Errorf("document %d (%v %v): %w", i, obj["kind"], objectName(obj), err)
		}
		out = append(out, a)
	}
}

func objectName(obj map[string]any) string {
	md, _ := obj["metadata"].(map[string]any)
	s, _ := md["name"].(string)
	return s
}

func (k *KubeServer) apply(ctx context.Context, obj map[string]any, o ApplyOptions) (*Applied, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	md, _ := obj["metadata"].(map[string]any)
	n := objectName(obj)
	if apiVersion == "" || kind == "" || n == "" {
		return nil, errors.New("kube-apiserver: apply: the manifest needs apiVersion, kind and metadata.name")
	}
	res, err := k.resource(ctx, apiVersion, kind)
	if err != nil {
		return nil, err
	}
	p := "/apis/" + apiVersion
	if !strings.Contains(apiVersion, "/") {
		p = "/api/" + apiVersion
	}
	if res.Namespaced {
		ns, _ := md["namespace"].(string)
		if ns == "" {
			ns = o.Namespace
		}
		if ns == "" {
			ns = "default"
		}
		p += "/namespaces/" + url.PathEscape(ns)
	}
	p += "/" + res.Name + "/" + url.PathEscape(n)
	q := url.Values{"fieldManager": {o.FieldManager}, "force": {"true"}, "fieldValidation": {"Strict"}}
	if o.FieldManager == "" {
		q.Set("fieldManager", "phase-sidecar-test")
	}
	if o.DryRun {
		q.Set("dryRun", "All")
	}
	a := &Applied{}
	a.Warnings, err = k.do(ctx, http.MethodPatch, p+"?"+q.Encode(), "application/apply-patch+yaml", obj, &a.Object)
	return a, err
}

// apiResource is one entry of a discovery document.
type apiResource struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Namespaced bool   `json:"namespaced"`
}

// discovery caches /api/v1 and /apis/GROUP/VERSION answers by apiVersion.
type discovery struct {
	mu    sync.Mutex
	lists map[string][]apiResource
}

// resource maps apiVersion and kind to a resource; a miss re-reads the
// group version once (a CRD just installed).
func (k *KubeServer) resource(ctx context.Context, apiVersion, kind string) (apiResource, error) {
	k.disc.mu.Lock()
	defer k.disc.mu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		list, ok := k.disc.lists[apiVersion]
		if !ok || attempt > 0 {
			p := "/apis/" + apiVersion
			if !strings.Contains(apiVersion, "/") {
				p = "/api/" + apiVersion
			}
			var dl struct {
				Resources []apiResource `json:"resources"`
			}
			err := k.Do(ctx, http.MethodGet, p, nil, &dl)
			if err != nil && !IsKubeReason(err, "NotFound") {
				return apiResource{}, err
			}
			list = dl.Resources
			k.disc.lists[apiVersion] = list
		}
		for _, r := range list {
			if r.Kind == kind && !strings.Contains(r.Name, "/") {
				return r, nil
			}
		}
	}
	return apiResource{}, fmt.Errorf("kube-apiserver: no resource of kind %s in %s (is its CRD installed?)", kind, apiVersion)
}

// WaitCRD waits until CustomResourceDefinition name is Established and its
// kinds are served, so that objects of it can be applied.
func (k *KubeServer) WaitCRD(t testing.TB, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var crd struct {
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Served bool   `json:"served"`
				} `json:"versions"`
			} `json:"spec"`
			Status struct {
				Conditions []struct {
					Type   string `json:"type"`
					Status string `json:"status"`
				} `json:"conditions"`
			} `json:"status"`
		}
		err := k.Do(t.Context(), http.MethodGet, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+url.PathEscape(name), nil, &crd)
		if err == nil {
			err = fmt.Errorf("CRD %s is not Established", name)
			for _, c := range crd.Status.Conditions {
				if c.Type == "Established" && c.Status == "True" {
					err = nil
				}
			}
		}
		for _, v := range crd.Spec.Versions {
			if err == nil && v.Served {
				_, err = k.resource(t.Context(), crd.Spec.Group+"/"+v.Name, crd.Spec.Names.Kind)
			}
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("wait for CRD %s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randomToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func pemFile(t testing.TB, path, typ string, der []byte) []byte {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	writeFile(t, path, string(b), 0o600)
	return b
}

// writeServingPKI writes a CA and a serving certificate for 127.0.0.1,
// localhost and the in-cluster names, and returns the CA's PEM.
func writeServingPKI(t testing.TB, caFile, certFile, keyFile string) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "phase-test kube CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 96, 0, 1)},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemFile(t, certFile, "CERTIFICATE", der)
	pemFile(t, keyFile, "PRIVATE KEY", keyDER)
	return pemFile(t, caFile, "CERTIFICATE", caDER)
}

// writeSigningKey writes the key pair service-account tokens are signed
// and verified with.
func writeSigningKey(t testing.TB, keyFile, pubFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemFile(t, keyFile, "PRIVATE KEY", keyDER)
	pemFile(t, pubFile, "PUBLIC KEY", pubDER)
}

// lastLines keeps the end of a long log.
func lastLines(log string) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > 60 {
		lines = append([]string{"[…]"}, lines[len(lines)-60:]...)
	}
	return strings.Join(lines, "\n")
}
