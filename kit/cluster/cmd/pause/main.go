// Command pause is the pod sandbox ("infra") container of the test node's containerd:
// it holds the pod's namespaces open, reaps the zombies it inherits as PID 1, and exits
// on SIGINT or SIGTERM. It does what Kubernetes' pause image does (build/pause/linux/pause.c)
// and is built here because no image registry can be reached (scripts/images.sh).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
