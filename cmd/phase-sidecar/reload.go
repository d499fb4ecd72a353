package main

import (
	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/reload"
)

// reloadConfig is the reloader's part of a loaded config, defaults already
// applied; the secrets with reload: false are its Exclude list.
func reloadConfig(cfg *config.Config) reload.Config {
	r := cfg.Reload
	rc := reload.Config{
		Coalesce:      r.Coalesce,
		MaxWait:       r.MaxWait,
		OnInitialSync: r.OnInitialSync,
	}
	// The option structs are the same on both sides: a conversion, so a
	// field added to one and not the other does not compile.
	if r.Signal != nil {
		s := reload.SignalConfig(*r.Signal)
		rc.Signal = &s
	}
	if r.HTTP != nil {
		h := reload.HTTPConfig(*r.HTTP)
		rc.HTTP = &h
	}
	if r.Exec != nil {
		e := reload.ExecConfig(*r.Exec)
		rc.Exec = &e
	}
	for _, s := range cfg.Secrets {
		if !s.Reload {
			rc.Exclude = append(rc.Exclude, s.Name)
		}
	}
	return rc
}

// supervisorOptions are the supervised child's settings; its logger,
// environment and standard streams are the caller's to add.
func supervisorOptions(sv config.Supervise) reload.SupervisorOptions {
	return reload.SupervisorOptions{
		Signal: sv.Signal, Restart: sv.Restart,
		StopSignal: sv.StopSignal, StopTimeout: sv.StopTimeout,
	}
}
