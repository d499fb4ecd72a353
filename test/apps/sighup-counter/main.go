// Command sighup-counter is a test app for pkg/reload: it counts the
// SIGHUPs it receives and reports each on stdout as "hup N", so a test can
// check that a batch of changes produced exactly one reload. It prints
// "ready PID" once its handlers are installed (a signal before that would
// kill it), writes its pid to -pid-file if given, and on SIGTERM or SIGINT
// prints "term SIG" and exits with -exit-code.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	pidFile := flag.String("pid-file", "", "write the pid here once ready")
	exitCode := flag.Int("exit-code", 0, "exit code after SIGTERM or SIGINT")
	flag.Parse()

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	if *pidFile != "" {
		tmp := *pidFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := os.Rename(tmp, *pidFile); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	fmt.Printf("ready %d\n", os.Getpid())

	hups := 0
	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			hups++
			fmt.Printf("hup %d\n", hups)
		case syscall.SIGUSR1:
			fmt.Println("usr1")
		default:
			fmt.Printf("term %s\n", sig)
			os.Exit(*exitCode)
		}
	}
}
