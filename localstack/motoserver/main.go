// Command motoserver runs moto's server as the stand-in for LocalStack where
// LocalStack is unavailable (CI, this machine): moto on a free loopback port
// behind test/awstest's compatibility proxy, ECS tasks kept RUNNING until
// stopped (as Fargate does). It writes the endpoint to <state>/endpoint and
// serves until SIGINT or SIGTERM. localstack/up.sh starts it; down.sh stops it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/jitgate/jitgate/test/awstest"
)

func main() {
	state := flag.String("state", "", "directory for the endpoint file")
	flag.Parse()
	if *state == "" {
		fmt.Fprintln(os.Stderr, "motoserver: -state is required")
		os.Exit(2)
	}
	srv, err := awstest.StartServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer srv.Stop()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.SetTransition(ctx, "ecs::task", awstest.Manual, 1_000_000); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	tmp := filepath.Join(*state, "endpoint.tmp")
	if err := os.WriteFile(tmp, []byte(srv.Endpoint+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(*state, "endpoint")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Println(srv.Endpoint)
	<-ctx.Done()
	_ = os.Remove(filepath.Join(*state, "endpoint"))
}
