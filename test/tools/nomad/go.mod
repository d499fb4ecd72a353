// Wrapper module that builds Nomad v1.4.1 (the last MPL-2.0 release) from the
// Go module proxy, for the deploy kit's tests. It carries Nomad's own
// replace directives, which a dependent module does not inherit, and pins
// nomad/api to the commit of the v1.4.1 tag.
module github.com/phase-sidecar/phase-sidecar/test/tools/nomad

go 1.19

require (
	github.com/hashicorp/nomad v1.4.1
	github.com/hashicorp/nomad/api v0.0.0-20221006174558-2aa7e66bdb52
)

replace (
	github.com/Microsoft/go-winio => github.com/endocrimes/go-winio v0.4.13-0.20190628114223-fb47a8b41948
	github.com/hashicorp/go-discover => github.com/hashicorp/go-discover v0.0.0-20220621183603-a413e131e836
	github.com/hashicorp/hcl => github.com/hashicorp/hcl v1.0.1-0.20201016140508-a07e7d50bbee
)
