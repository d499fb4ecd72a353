// Package kubernetes_test checks the kustomize tree: every manifest, raw and
// built, decodes strictly into the Kubernetes API types, and the pods are
// wired the way the sidecar needs.
package kubernetes_test

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/deploy/internal/kit"
	"github.com/phase-sidecar/phase-sidecar/deploy/phase"
	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var overlays = []string{"vault", "aws"}

// objects is what a kustomization builds, decoded.
type objects struct {
	deployments     []*appsv1.Deployment
	jobs            []*batchv1.Job
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	podMonitors     []*monitoringv1.PodMonitor
}

// decodeStrict decodes one manifest into its API type by kind; unknown
// fields, unknown kinds and wrong apiVersions fail.
func decodeStrict(t *testing.T, name string, doc []byte, into *objects) {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	strict := func(v any) {
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			t.Errorf("%s: %s %s does not decode strictly: %v", name, tm.APIVersion, tm.Kind, err)
		}
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		var o appsv1.Deployment
		strict(&o)
		into.deployments = append(into.deployments, &o)
	case "batch/v1 Job":
		var o batchv1.Job
		strict(&o)
		into.jobs = append(into.jobs, &o)
	case "v1 ServiceAccount":
		var o corev1.ServiceAccount
		strict(&o)
		into.serviceAccounts = append(into.serviceAccounts, &o)
	case "v1 ConfigMap":
		var o corev1.ConfigMap
		strict(&o)
		into.configMaps = append(into.configMaps, &o)
	case "monitoring.coreos.com/v1 PodMonitor":
		var o monitoringv1.PodMonitor
		strict(&o)
		into.podMonitors = append(into.podMonitors, &o)
	default:
		t.Errorf("%s: no API type for %s %s", name, tm.APIVersion, tm.Kind)
	}
}

func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(b, []byte("\n---")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// TestRawManifestsStrict decodes every manifest file in base/ and the
// overlays' strategic-merge patches on their own.
func TestRawManifestsStrict(t *testing.T) {
	files, err := filepath.Glob("base/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "overlays/aws/irsa.yaml")
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var objs objects
		for _, doc := range splitDocs(b) {
			decodeStrict(t, f, doc, &objs)
		}
	}
}

func build(t *testing.T, dir string) *objects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs objects
	for _, r := range res.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		decodeStrict(t, dir+": "+r.GetKind()+"/"+r.GetName(), b, &objs)
	}
	return &objs
}

func TestOverlays(t *testing.T) {
	cat, err := phase.Load("../phase/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			dir := filepath.Join("overlays", overlay)
			objs := build(t, dir)
			if len(objs.deployments) != 1 || len(objs.jobs) != 1 || len(objs.serviceAccounts) != 1 ||
				len(objs.configMaps) != 1 || len(objs.podMonitors) != 1 {
				t.Fatalf("want one Deployment, Job, ServiceAccount, ConfigMap and PodMonitor; got %d %d %d %d %d",
					len(objs.deployments), len(objs.jobs), len(objs.serviceAccounts), len(objs.configMaps), len(objs.podMonitors))
			}
			cm := objs.configMaps[0]
			raw, ok := cm.Data["phase-sidecar.yaml"]
			if !ok {
				t.Fatalf("ConfigMap %s has no phase-sidecar.yaml", cm.Name)
			}
			cfg, err := config.Parse(dir+"/phase-sidecar.yaml", []byte(raw))
			if err != nil {
				t.Fatalf("the sidecar config does not load: %v", err)
			}
			sa := objs.serviceAccounts[0]

			d := objs.deployments[0]
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("Deployment selector %v does not match its pod labels %v", d.Spec.Selector, d.Spec.Template.Labels)
			}
			p := pod{t: t, name: "Deployment " + d.Name, spec: &d.Spec.Template.Spec, meta: d.Spec.Template.ObjectMeta, cfg: cfg, cm: cm.Name, cat: cat, container: "backend"}
			p.check(true)
			p.checkServiceAccount(sa)

			pm := objs.podMonitors[0]
			pmSel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
			if err != nil || !pmSel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("PodMonitor selector %v does not select the backend pods", pm.Spec.Selector)
			}
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if ep.Port == nil || *ep.Port != "metrics" || ep.Path != "/metrics" {
					t.Errorf("PodMonitor endpoint %+v: want port metrics, path /metrics", ep)
				}
			}

			j := objs.jobs[0]
			jp := pod{t: t, name: "Job " + j.Name, spec: &j.Spec.Template.Spec, meta: j.Spec.Template.ObjectMeta, cfg: cfg, cm: cm.Name, cat: cat, container: "backend"}
			jp.check(false)
			jp.checkServiceAccount(sa)
		})
	}
}

// pod holds one pod template and what it is checked against.
type pod struct {
	t         *testing.T
	name      string
	spec      *corev1.PodSpec
	meta      metav1.ObjectMeta
	cfg       *config.Config
	cm        string // the generated ConfigMap's name
	cat       *phase.Catalogue
	container string // the Phase container the app is
}

func (p pod) errorf(format string, args ...any) {
	p.t.Helper()
	p.t.Errorf(p.name+": "+format, args...)
}

// check verifies the wiring; native says whether the sidecar is a native
// sidecar (run) or a plain init container (once).
func (p pod) check(native bool) {
	t := p.t
	t.Helper()
	if len(p.spec.InitContainers) != 1 || len(p.spec.Containers) != 1 {
		t.Fatalf("%s: want one init container (the sidecar) and one app container", p.name)
	}
	sc, app := p.spec.InitContainers[0], p.spec.Containers[0]

	// Native sidecar or plain init container, and the command it runs.
	always := sc.RestartPolicy != nil && *sc.RestartPolicy == corev1.ContainerRestartPolicyAlways
	wantCmd := "once"
	if native {
		wantCmd = "run"
		if !always {
			p.errorf("the sidecar needs restartPolicy: Always to be a native sidecar")
		}
	} else if always {
		p.errorf("a Job's once container must be a plain init container")
	}
	if len(sc.Args) == 0 || sc.Args[0] != wantCmd {
		p.errorf("sidecar args %v: want %s first", sc.Args, wantCmd)
	}

	// --config points into the mounted ConfigMap.
	i := slices.Index(sc.Args, "--config")
	if i < 0 || i+1 >= len(sc.Args) {
		p.errorf("sidecar args %v lack --config", sc.Args)
	} else {
		cfgPath := sc.Args[i+1]
		vol, mount := p.mountFor(sc, cfgPath)
		if vol == nil || vol.ConfigMap == nil || vol.ConfigMap.Name != p.cm || path.Base(cfgPath) != "phase-sidecar.yaml" {
			p.errorf("--config %s is not the phase-sidecar.yaml key of ConfigMap %s", cfgPath, p.cm)
		} else if !mount.ReadOnly {
			p.errorf("the config mount should be read-only")
		}
	}

	// The startupProbe gates the app on /readyz, on the port the sidecar
	// listens on.
	if native {
		listenPort := p.cfg.Listen[strings.LastIndex(p.cfg.Listen, ":")+1:]
		pr := sc.StartupProbe
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/readyz" {
			p.errorf("the sidecar needs a startupProbe on /readyz, got %+v", pr)
		} else {
			port := p.resolvePort(sc, pr.HTTPGet.Port.String())
			if strconv.Itoa(port) != listenPort {
				p.errorf("startupProbe port %s = %d, the sidecar listens on %s", pr.HTTPGet.Port.String(), port, p.cfg.Listen)
			}
			if p.meta.Annotations["prometheus.io/port"] != listenPort || p.meta.Annotations["prometheus.io/scrape"] != "true" {
				p.errorf("scrape annotations %v do not match listen %s", p.meta.Annotations, p.cfg.Listen)
			}
		}
		if p.cfg.Reload.Signal != nil && (p.spec.ShareProcessNamespace == nil || !*p.spec.ShareProcessNamespace) {
			p.errorf("a signal reload needs shareProcessNamespace: true")
		}
	}

	// The shared volume: in memory, bounded, mounted in both at output.dir.
	vs, ms := p.mountFor(sc, p.cfg.Output.Dir+"/x")
	va, ma := p.mountFor(app, p.cfg.Output.Dir+"/x")
	switch {
	case vs == nil || va == nil || vs.Name != va.Name:
		p.errorf("output.dir %s is not one volume mounted in both containers", p.cfg.Output.Dir)
	case vs.EmptyDir == nil || vs.EmptyDir.Medium != corev1.StorageMediumMemory || vs.EmptyDir.SizeLimit == nil:
		p.errorf("volume %s must be an emptyDir with medium Memory and a sizeLimit", vs.Name)
	case ms.MountPath != p.cfg.Output.Dir || ma.MountPath != p.cfg.Output.Dir:
		p.errorf("volume %s is mounted at %s and %s, output.dir is %s", vs.Name, ms.MountPath, ma.MountPath, p.cfg.Output.Dir)
	case ms.ReadOnly || !ma.ReadOnly:
		p.errorf("the sidecar mounts the secrets read-write, the app read-only")
	}

	// Every secret of the config reaches the app as NAME_FILE with its
	// path, and every NAME_FILE of the app is a secret of the config and a
	// catalogue variable of its container.
	want := map[string]string{}
	for _, s := range p.cfg.Secrets {
		want[p.cfg.EnvName(s)] = p.cfg.TargetPath(s)
	}
	got := map[string]string{}
	for _, e := range app.Env {
		if name, ok := strings.CutSuffix(e.Name, "_FILE"); ok {
			got[e.Name] = e.Value
			v, ok := p.cat.Variable(name)
			if !ok || !slices.Contains(v.Containers, p.container) {
				p.errorf("%s is not a catalogue variable of the %s container", e.Name, p.container)
			}
			if !strings.HasPrefix(e.Value, p.cfg.Output.Dir+"/") {
				p.errorf("%s=%s is outside the shared volume %s", e.Name, e.Value, p.cfg.Output.Dir)
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			p.errorf("app env %s=%q, the config writes %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			p.errorf("app env %s names no secret of the config", k)
		}
	}

	// Hardening.
	psc := p.spec.SecurityContext
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.errorf("pod needs seccompProfile RuntimeDefault")
	}
	for _, c := range []corev1.Container{sc, app} {
		s := c.SecurityContext
		switch {
		case s == nil:
			p.errorf("container %s has no securityContext", c.Name)
		case s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem:
			p.errorf("container %s: readOnlyRootFilesystem", c.Name)
		case s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation:
			p.errorf("container %s: allowPrivilegeEscalation: false", c.Name)
		case s.Capabilities == nil || !slices.Contains(s.Capabilities.Drop, "ALL") || len(s.Capabilities.Add) > 0:
			p.errorf("container %s: drop ALL capabilities and add none", c.Name)
		case (s.RunAsNonRoot == nil || !*s.RunAsNonRoot) && (psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot):
			p.errorf("container %s: runAsNonRoot", c.Name)
		}
	}
	if native && p.cfg.Reload.Signal != nil && p.uid(sc) != p.uid(app) {
		p.errorf("signal reload: sidecar uid %d and app uid %d differ; signals need the same uid", p.uid(sc), p.uid(app))
	}
}

func (p pod) checkServiceAccount(sa *corev1.ServiceAccount) {
	p.t.Helper()
	if p.spec.ServiceAccountName != sa.Name {
		p.errorf("serviceAccountName %q, the kit's ServiceAccount is %q", p.spec.ServiceAccountName, sa.Name)
	}
}

func (p pod) uid(c corev1.Container) int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return *c.SecurityContext.RunAsUser
	}
	if p.spec.SecurityContext != nil && p.spec.SecurityContext.RunAsUser != nil {
		return *p.spec.SecurityContext.RunAsUser
	}
	return -1
}

// mountFor returns the volume and mount of c that contain file.
func (p pod) mountFor(c corev1.Container, file string) (*corev1.Volume, *corev1.VolumeMount) {
	for i, m := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			for j, v := range p.spec.Volumes {
				if v.Name == m.Name {
					return &p.spec.Volumes[j], &c.VolumeMounts[i]
				}
			}
		}
	}
	return nil, nil
}

func (p pod) resolvePort(c corev1.Container, port string) int {
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	for _, cp := range c.Ports {
		if cp.Name == port {
			return int(cp.ContainerPort)
		}
	}
	p.errorf("container %s has no port named %s", c.Name, port)
	return 0
}

// TestEnvGenerated checks that the app's NAME_FILE env in the manifests is
// exactly what `phase-sidecar env --format k8s` prints for the config.
func TestEnvGenerated(t *testing.T) {
	bin := kit.BuildSidecar(t, t.TempDir())
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			cfgPath := filepath.Join("overlays", overlay, "phase-sidecar.yaml")
			out, err := exec.Command(bin, "env", "--format", "k8s", "--config", cfgPath).Output()
			if err != nil {
				t.Fatalf("phase-sidecar env: %v", err)
			}
			var gen struct {
				Env []corev1.EnvVar `json:"env"`
			}
			if err := yaml.UnmarshalStrict(out, &gen); err != nil {
				t.Fatalf("env --format k8s output does not decode: %v\n%s", err, out)
			}
			objs := build(t, filepath.Join("overlays", overlay))
			specs := map[string]corev1.PodSpec{
				"Deployment": objs.deployments[0].Spec.Template.Spec,
				"Job":        objs.jobs[0].Spec.Template.Spec,
			}
			for kind, spec := range specs {
				var fileEnv []corev1.EnvVar
				for _, e := range spec.Containers[0].Env {
					if strings.HasSuffix(e.Name, "_FILE") {
						fileEnv = append(fileEnv, e)
					}
				}
				if !slices.Equal(fileEnv, gen.Env) {
					t.Errorf("%s: app env\n%v\nis not what env --format k8s prints:\n%v", kind, fileEnv, gen.Env)
				}
			}
		})
	}
}
