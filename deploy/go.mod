module github.com/phase-sidecar/phase-sidecar/deploy

go 1.26.8

require github.com/phase-sidecar/phase-sidecar v0.0.0-00010101000000-000000000000

require go.yaml.in/yaml/v3 v3.0.6 // indirect

replace github.com/phase-sidecar/phase-sidecar => ../
