package injector

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// inheritedEnv are variables of the app containers that the sidecar needs
// as well: the AWS web identity (IRSA) and pod identity settings that EKS's
// webhook may have added before this one ran.
var inheritedEnv = []string{
	"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_STS_REGIONAL_ENDPOINTS", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
}

// tokenFileEnv are the inherited variables that hold a path the sidecar
// must be able to read.
var tokenFileEnv = []string{"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}

// target is one app container that gets the volume and the variables.
type target struct {
	path string // JSON pointer of the container: /spec/containers/1
	c    *corev1.Container
}

// mutation is the work of one admission: the pod as sent, the sidecar
// config, and the patch and warnings being built.
type mutation struct {
	pod      *corev1.Pod
	sel      *selection
	cfg      *config.Config
	side     Sidecar
	image    string
	cmName   string // namespace/name, for messages
	outDir   string
	volume   string // the secrets volume's name
	targets  []target
	patch    patch
	warnings []string
}

// build returns the patch that gives pod its sidecar, with warnings for the
// pod's creator, or a Refusal. It checks everything before it builds
// anything: a pod is mutated whole or not at all.
func (m *mutation) build() (patch, []string, error) {
	m.outDir = path.Clean(m.cfg.Output.Dir)
	port, err := m.checkListen()
	if err != nil {
		return nil, nil, err
	}
	if err := m.checkNames(port); err != nil {
		return nil, nil, err
	}
	if err := m.chooseTargets(); err != nil {
		return nil, nil, err
	}
	signal := m.cfg.Reload.Signal != nil
	if share := m.pod.Spec.ShareProcessNamespace; signal && share != nil && !*share {
		return nil, nil, refuse(ReasonConflict, "the config of ConfigMap %s reloads the app by signal, which needs a shared PID namespace, but the pod sets shareProcessNamespace: false; remove it, or reload by HTTP (reload.http.url)", m.cmName)
	}
	if err := m.volumes(); err != nil {
		return nil, nil, err
	}
	for _, t := range m.targets {
		if err := m.wire(t); err != nil {
			return nil, nil, err
		}
	}
	side := m.sidecar(port)
	if m.pod.Spec.InitContainers == nil {
		m.patch.add("/spec/initContainers", []corev1.Container{side})
	} else {
		// First, so that the app's own init containers find the files.
		m.patch.add("/spec/initContainers/0", side)
	}
	if signal && m.pod.Spec.ShareProcessNamespace == nil {
		m.patch.add("/spec/shareProcessNamespace", true)
	}
	setKey(&m.patch, "/metadata/annotations", m.pod.Annotations, AnnotationStatus, statusInjected)
	setKey(&m.patch, "/metadata/labels", m.pod.Labels, LabelInjected, "true")
	return m.patch, m.warnings, nil
}

// checkListen returns the port the sidecar serves /readyz on, which the
// kubelet's probes must reach on the pod's address.
func (m *mutation) checkListen() (int, error) {
	host, p, err := net.SplitHostPort(m.cfg.Listen)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil || port <= 0 {
		return 0, refuse(ReasonConflict, "the config of ConfigMap %s listens on %q, which has no port for the startupProbe on /readyz; want \":PORT\"", m.cmName, m.cfg.Listen)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return 0, refuse(ReasonConflict, "the config of ConfigMap %s listens on %q only, where the kubelet's startupProbe on /readyz cannot reach it; want \":%d\"", m.cmName, m.cfg.Listen, port)
	}
	return port, nil
}

// checkNames refuses a pod that already has what the injector would add.
func (m *mutation) checkNames(port int) error {
	spec := &m.pod.Spec
	if hasContainer(m.pod, ContainerName) {
		return refuse(ReasonConflict, "the pod already has a container named %q; remove it to let the injector add the sidecar, or set %s: \"false\" to keep your own", ContainerName, AnnotationInject)
	}
	for _, v := range spec.Volumes {
		if v.Name == ConfigVolume || (v.Name == SecretsVolume && m.sel.replaceVolume == "") {
			return refuse(ReasonConflict, "the pod already has a volume named %q, which the injector adds; rename it", v.Name)
		}
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, p := range c.Ports {
			if int(p.ContainerPort) == port {
				return refuse(ReasonConflict, "container %q already uses port %d, where the config of ConfigMap %s listens (listen: %q); change listen", c.Name, port, m.cmName, m.cfg.Listen)
			}
			if p.Name == MetricsPortName {
				return refuse(ReasonConflict, "container %q already has a port named %q, which the injector gives the sidecar; rename it", c.Name, MetricsPortName)
			}
		}
	}
	return nil
}

// chooseTargets picks the app containers: those named by the selection,
// else every container (init containers only when named).
func (m *mutation) chooseTargets() error {
	spec := &m.pod.Spec
	for i := range spec.InitContainers {
		if slices.Contains(m.sel.containers, spec.InitContainers[i].Name) {
			m.targets = append(m.targets, target{fmt.Sprintf("/spec/initContainers/%d", i), &spec.InitContainers[i]})
		}
	}
	for i := range spec.Containers {
		if len(m.sel.containers) == 0 || slices.Contains(m.sel.containers, spec.Containers[i].Name) {
			m.targets = append(m.targets, target{fmt.Sprintf("/spec/containers/%d", i), &spec.Containers[i]})
		}
	}
	for _, n := range m.sel.containers {
		if !hasContainer(m.pod, n) { // a policy's list; the annotation's is checked when parsed
			return refuse(ReasonConflict, "injector policy %q names container %q, which the pod does not have (it has %s)", m.sel.policy, n, strings.Join(containerNames(m.pod), ", "))
		}
	}
	return nil
}

// volumes adds the config volume and the in-memory secrets volume, or
// turns the volume named by replace-volume into the latter.
func (m *mutation) volumes() error {
	spec := &m.pod.Spec
	secrets := corev1.Volume{Name: SecretsVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium: corev1.StorageMediumMemory, SizeLimit: m.side.SecretsSizeLimit,
	}}}
	cfgVol := corev1.Volume{Name: ConfigVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: m.sel.configMap},
		Items:                []corev1.KeyToPath{{Key: ConfigKey, Path: ConfigKey}},
	}}}
	m.volume = SecretsVolume
	if r := m.sel.replaceVolume; r != "" {
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == r })
		if i < 0 {
			return refuse(ReasonConflict, "%s names volume %q, which the pod does not have", m.replaceSource(), r)
		}
		secrets.Name = r
		m.volume = r
		m.patch.replace(fmt.Sprintf("/spec/volumes/%d", i), secrets)
		appendAll(&m.patch, "/spec/volumes", true, cfgVol)
		return nil
	}
	appendAll(&m.patch, "/spec/volumes", spec.Volumes != nil, secrets, cfgVol)
	return nil
}

func (m *mutation) replaceSource() string {
	if m.pod.Annotations[AnnotationReplaceVolume] != "" {
		return "annotation " + AnnotationReplaceVolume
	}
	return fmt.Sprintf("injector policy %q (replaceVolume)", m.sel.policy)
}

// wire mounts the secrets volume read-only at output.dir in one app
// container and sets a NAME_FILE variable for each secret it does not set
// itself.
func (m *mutation) wire(t target) error {
	mounted := false
	for _, vm := range t.c.VolumeMounts {
		switch {
		case vm.Name == m.volume && (path.Clean(vm.MountPath) != m.outDir || vm.SubPath != "" || vm.SubPathExpr != ""):
			return refuse(ReasonConflict, "container %q mounts volume %q at %s, but the config of ConfigMap %s writes to output.dir %s; set output.dir to %s (the sidecar's volume replaces %q whole)", t.c.Name, vm.Name, vm.MountPath+vm.SubPath, m.cmName, m.outDir, vm.MountPath, vm.Name)
		case vm.Name == m.volume:
			mounted = true
		case within(m.outDir, vm.MountPath):
			return refuse(ReasonConflict, "container %q already mounts volume %q at %s, which collides with output.dir %s of the config of ConfigMap %s; change output.dir, or name the volume in %s to let the sidecar's volume replace it", t.c.Name, vm.Name, vm.MountPath, m.outDir, m.cmName, AnnotationReplaceVolume)
		}
	}
	var env []corev1.EnvVar
	for _, s := range m.cfg.Secrets {
		name, file := m.cfg.EnvName(s), m.cfg.TargetPath(s)
		if s.Bundle == "" && s.Ref.Expands() {
			m.warn("secret %s (%s) expands into one file per entry, so no %s variable is set in container %q", s.Name, s.Ref, name, t.c.Name)
			continue
		}
		i := slices.IndexFunc(t.c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 {
			env = append(env, corev1.EnvVar{Name: name, Value: config.EscapeDollars(file)})
			continue
		}
		if err := m.checkOwnEnv(t.c, t.c.Env[i], file); err != nil {
			return err
		}
	}
	if !mounted {
		appendAll(&m.patch, t.path+"/volumeMounts", t.c.VolumeMounts != nil,
			corev1.VolumeMount{Name: m.volume, MountPath: m.outDir, ReadOnly: true})
	}
	appendAll(&m.patch, t.path+"/env", t.c.Env != nil, env...)
	return nil
}

// checkOwnEnv looks at a NAME_FILE variable the container sets itself. One
// that points into output.dir at a file the sidecar does not write would
// leave the app on its silent fallback: refused. One that points elsewhere
// is the creator's choice: a warning.
func (m *mutation) checkOwnEnv(c *corev1.Container, e corev1.EnvVar, file string) error {
	// The path the app gets: the kubelet reads $$ as $ (config.EscapeDollars).
	v := strings.ReplaceAll(e.Value, "$$", "$")
	switch {
	case e.ValueFrom != nil || strings.Contains(e.Value, "$("):
	case within(m.outDir, v) && !m.writes(path.Clean(v)):
		return refuse(ReasonConflict, "container %q sets %s=%s, but the config of ConfigMap %s writes that secret to %s and nothing to %s; fix the variable or the secret's file", c.Name, e.Name, e.Value, m.cmName, file, v)
	case !within(m.outDir, v):
		m.warn("container %q sets %s=%s itself, outside the sidecar's %s: it will not read the sidecar's %s", c.Name, e.Name, e.Value, m.outDir, file)
	}
	return nil
}

// writes reports whether the sidecar writes a file at p.
func (m *mutation) writes(p string) bool {
	return slices.ContainsFunc(m.cfg.Secrets, func(s config.Secret) bool { return m.cfg.TargetPath(s) == p })
}

// sidecar is the native sidecar: an init container with restartPolicy
// Always, which the kubelet starts first, holds the app back until its
// startupProbe passes (every required secret written), keeps running
// beside the app and stops after it (a Job's pod still completes).
func (m *mutation) sidecar(port int) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	c := corev1.Container{
		Name:            ContainerName,
		Image:           m.image,
		ImagePullPolicy: m.side.ImagePullPolicy,
		RestartPolicy:   &always,
		Args:            []string{"run", "--config", ConfigDir + "/" + ConfigKey, "--log-format", "json"},
		Ports:           []corev1.ContainerPort{{Name: MetricsPortName, ContainerPort: int32(port), Protocol: corev1.ProtocolTCP}},
		StartupProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString(MetricsPortName)}},
			PeriodSeconds:    1,
			FailureThreshold: 300,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString(MetricsPortName)}},
			PeriodSeconds: 10,
		},
		Resources:       *m.side.Resources.DeepCopy(),
		SecurityContext: m.securityContext(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: m.volume, MountPath: m.outDir},
			{Name: ConfigVolume, MountPath: ConfigDir, ReadOnly: true},
		},
	}
	env, files := m.inherited()
	c.Env = env
	c.VolumeMounts = append(c.VolumeMounts, m.borrowedMounts(append(m.configPaths(), files...))...)
	return c
}

// securityContext is the sidecar's: non-root, nothing to escalate to. For
// a signal reload it takes the app container's uid, since a process may
// signal only its own uid's processes without CAP_KILL.
func (m *mutation) securityContext() *corev1.SecurityContext {
	f, t := false, true
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &f,
		ReadOnlyRootFilesystem:   &t,
		RunAsNonRoot:             &t,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if m.cfg.Reload.Signal == nil {
		return sc
	}
	for _, tg := range m.targets {
		if s := tg.c.SecurityContext; s != nil && s.RunAsUser != nil {
			if *s.RunAsUser == 0 {
				m.warn("container %q runs as root; the sidecar does not (runAsNonRoot), so its reload signal will be refused: run the app as a non-root uid", tg.c.Name)
				return sc
			}
			sc.RunAsUser, sc.RunAsGroup = s.RunAsUser, s.RunAsGroup
			return sc
		}
	}
	if psc := m.pod.Spec.SecurityContext; psc == nil || psc.RunAsUser == nil {
		m.warn("the config of ConfigMap %s reloads by signal, which needs the sidecar and the app to run as one uid, but the pod sets no runAsUser: set it on the pod", m.cmName)
	}
	return sc
}

// inherited returns the variables of inheritedEnv that the first app
// container setting each has, and the files they name.
func (m *mutation) inherited() ([]corev1.EnvVar, []string) {
	if !slices.ContainsFunc(m.cfg.Secrets, func(s config.Secret) bool { return strings.HasPrefix(s.Ref.Kind, "aws") }) {
		return nil, nil
	}
	var env []corev1.EnvVar
	var files []string
	for _, name := range inheritedEnv {
		for _, t := range m.targets {
			i := slices.IndexFunc(t.c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
			if i < 0 {
				continue
			}
			env = append(env, t.c.Env[i])
			if slices.Contains(tokenFileEnv, name) && t.c.Env[i].ValueFrom == nil {
				files = append(files, t.c.Env[i].Value)
			}
			break
		}
	}
	return env, files
}

// configPaths are the files the sidecar config reads: credentials, CA
// certificates, file refs, the pid file.
func (m *mutation) configPaths() []string {
	var ps []string
	if v := m.cfg.Sources.Vault; v != nil {
		a := v.Auth
		ps = append(ps, v.CACert, v.ClientCert, v.ClientKey, a.TokenFile, a.RoleIDFile, a.SecretIDFile, a.JWTFile)
	}
	for _, s := range m.cfg.Secrets {
		if s.Ref.Kind == sources.File {
			ps = append(ps, s.Ref.Path)
		}
	}
	if s := m.cfg.Reload.Signal; s != nil {
		ps = append(ps, s.PIDFile)
	}
	return slices.DeleteFunc(ps, func(p string) bool { return p == "" })
}

// borrowedMounts gives the sidecar, read-only, the app containers' mounts
// that hold the files it reads (the service-account token, a Vault CA, a
// mounted Secret): the API server added those to the containers before
// this webhook ran, so the sidecar would not get them otherwise.
func (m *mutation) borrowedMounts(files []string) []corev1.VolumeMount {
	var out []corev1.VolumeMount
	for _, f := range files {
		var best *corev1.VolumeMount
		for _, t := range m.targets {
			for i, vm := range t.c.VolumeMounts {
				if vm.SubPath == "" && vm.SubPathExpr == "" && within(vm.MountPath, f) && (best == nil || len(vm.MountPath) > len(best.MountPath)) {
					best = &t.c.VolumeMounts[i]
				}
			}
		}
		switch {
		case best == nil && within(m.outDir, f):
			// Written by the sidecar itself (a pid file in the shared volume).
		case best == nil:
			m.warn("the config of ConfigMap %s reads %s, which no container of the pod mounts: the sidecar looks for it in its own image", m.cmName, f)
		case within(m.outDir, best.MountPath) || within(ConfigDir, best.MountPath):
			// Would hide the sidecar's own mounts.
		case !slices.ContainsFunc(out, func(o corev1.VolumeMount) bool { return o.MountPath == best.MountPath }):
			out = append(out, corev1.VolumeMount{Name: best.Name, MountPath: best.MountPath, ReadOnly: true, MountPropagation: best.MountPropagation})
		}
	}
	return out
}

func (m *mutation) warn(format string, args ...any) {
	m.warnings = append(m.warnings, "phase-sidecar: "+fmt.Sprintf(format, args...))
}

// within reports whether p is dir or below it.
func within(dir, p string) bool {
	if !path.IsAbs(p) {
		return false
	}
	dir, p = path.Clean(dir), path.Clean(p)
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
