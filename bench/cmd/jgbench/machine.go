package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// machine is what the report says about where it ran.
type machine struct {
	started   time.Time
	finished  time.Time
	nproc     int
	cpu       string
	memory    string
	kernel    string
	goVersion string
	commit    string
	loads     []phaseLoad
}

type phaseLoad struct {
	phase string
	load  string
}

func machineInfo(ctx context.Context, repo string) *machine {
	m := &machine{started: time.Now(), nproc: runtime.NumCPU()}
	m.cpu = procField("/proc/cpuinfo", "model name")
	m.memory = procField("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.goVersion = strings.TrimSpace(string(out))
	}
	git := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD")
	git.Dir = repo
	if out, err := git.Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
	}
	m.mark("start")
	return m
}

// mark records the load average as a phase begins.
func (m *machine) mark(phase string) {
	m.loads = append(m.loads, phaseLoad{phase, loadAvg()})
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown"
}

// versionOf runs `name args...` and returns its first output line.
func versionOf(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line, nil
}
