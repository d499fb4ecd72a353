//go:build race

package fleet

// raceEnabled: the test runs with -race, and so do the sidecars it builds.
const raceEnabled = true
