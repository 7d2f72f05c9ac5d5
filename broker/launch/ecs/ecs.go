// Package ecs launches the ephemeral proxy of a session-mode grant as one
// Fargate task (the runner image in ECS mode) in AWS. It is the launch step of
// the flow (grant → credentials → launch → engine) for sessions: the broker
// hands it the complete spec.Grant and gets back the task's private address,
// where the agent connects with its one-time grant secret.
//
// The credential never reaches the ECS API. Launch puts the spec into Vault
// behind a single-use response-wrapping token and starts the task with only
// two variables in its container overrides: JITGATE_GRANT_ID and
// JITGATE_WRAP_TOKEN. Overrides are visible to anyone who may DescribeTasks;
// a wrapping token seen there is worthless once the task has unwrapped it, and
// a task that finds its token already used refuses to run.
//
// Launch returns once the task is RUNNING; Ready reports its address. Wait
// returns when the task stopped, and stops it itself when the grant's deadline
// (plus StopGrace) has passed: the proxy ends itself at its deadline, this is
// the backstop. StopOrphans, run by the sweeper, stops the tasks of grants
// that ended or expired while no broker was watching (a broker in Lambda is
// frozen between invocations).
//
//	l, err := ecs.New(ecs.Config{Client: awsecs.NewFromConfig(cfg), Cluster: "jitgate",
//		TaskDefinition: "jitgate-proxy", Container: "proxy", Subnets: subnets,
//		SecurityGroups: sgs, Wrapper: lambda.VaultWrapper{Client: vaultClient}})
package ecs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/jitgate/jitgate/broker/launch"
	"github.com/jitgate/jitgate/broker/launch/lambda"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// The only two variables a task gets from the launcher.
const (
	EnvGrantID   = "JITGATE_GRANT_ID"
	EnvWrapToken = "JITGATE_WRAP_TOKEN"
)

// StartedBy marks every task this package starts; ListTasks filters on it.
const StartedBy = "jitgate"

// groupPrefix + grant id is each task's ECS group.
const groupPrefix = "jitgate:"

// Tag keys on every task.
const (
	TagGrant    = "jitgate:grant"
	TagDeadline = "jitgate:deadline"
)

// API is the part of the ECS client the launcher uses.
type API interface {
	RunTask(ctx context.Context, in *awsecs.RunTaskInput, opts ...func(*awsecs.Options)) (*awsecs.RunTaskOutput, error)
	DescribeTasks(ctx context.Context, in *awsecs.DescribeTasksInput, opts ...func(*awsecs.Options)) (*awsecs.DescribeTasksOutput, error)
	StopTask(ctx context.Context, in *awsecs.StopTaskInput, opts ...func(*awsecs.Options)) (*awsecs.StopTaskOutput, error)
	ListTasks(ctx context.Context, in *awsecs.ListTasksInput, opts ...func(*awsecs.Options)) (*awsecs.ListTasksOutput, error)
}

// Config configures the launcher.
type Config struct {
	// Client is an ECS client. Required.
	Client API
	// Cluster is the cluster name or ARN. Required.
	Cluster string
	// TaskDefinition is the proxy's task definition (family, family:revision
	// or ARN), networkMode awsvpc, FARGATE. Required.
	TaskDefinition string
	// Container is the name of the proxy container in the task definition.
	// Required.
	Container string
	// Subnets and SecurityGroups place the task; both required. The security
	// group must admit agents on Port and nothing else.
	Subnets        []string
	SecurityGroups []string
	// AssignPublicIP gives the task a public address. Leave it off: agents
	// reach sessions inside the VPC.
	AssignPublicIP bool
	// Port is where the proxy listens inside the task; default 5432.
	Port int
	// Wrapper turns the spec into a wrapping token. Required.
	Wrapper lambda.Wrapper
	// WrapTTL is the wrapping token's lifetime: it must cover the task's
	// start (image pull included); default 5m.
	WrapTTL time.Duration
	// StartTimeout bounds the wait for RUNNING; default 3m.
	StartTimeout time.Duration
	// PollEvery is the DescribeTasks interval; default 2s.
	PollEvery time.Duration
	// StopGrace is how long after a grant's deadline a task may still run
	// before Wait or StopOrphans stops it; default 30s.
	StopGrace time.Duration
	// RecordingURI names where a grant's task stores its recording, for the
	// exit status (e.g. the S3 URI the runner uploads to). Optional.
	RecordingURI func(grantID string) string
	Logger       *slog.Logger
	Now          func() time.Time
}

func (c *Config) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("launch/ecs: Client is required")
	case c.Cluster == "":
		return errors.New("launch/ecs: Cluster is required")
	case c.TaskDefinition == "":
		return errors.New("launch/ecs: TaskDefinition is required")
	case c.Container == "":
		return errors.New("launch/ecs: Container is required")
	case len(c.Subnets) == 0:
		return errors.New("launch/ecs: Subnets are required")
	case len(c.SecurityGroups) == 0:
		return errors.New("launch/ecs: SecurityGroups are required: a session task must not run in the VPC's default group")
	case c.Wrapper == nil:
		return errors.New("launch/ecs: Wrapper is required: the spec reaches the task only as a Vault wrapping token")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("launch/ecs: Port %d is out of range", c.Port)
	}
	if c.Port == 0 {
		c.Port = 5432
	}
	if c.WrapTTL <= 0 {
		c.WrapTTL = 5 * time.Minute
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 3 * time.Minute
	}
	if c.PollEvery <= 0 {
		c.PollEvery = 2 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 30 * time.Second
	}
	if c.RecordingURI == nil {
		c.RecordingURI = func(string) string { return "" }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Launcher runs one Fargate task per session grant.
type Launcher struct{ cfg Config }

var _ launch.Launcher = (*Launcher)(nil)

// New checks cfg.
func New(cfg Config) (*Launcher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Launcher{cfg: cfg}, nil
}

// Launch wraps g, starts its task and waits until the task is RUNNING. Only
// session grants run in ECS.
func (l *Launcher) Launch(ctx context.Context, g *spec.Grant) (launch.Handle, error) {
	if g == nil {
		return nil, errors.New("launch/ecs: nil grant")
	}
	if g.Mode != spec.Session {
		return nil, fmt.Errorf("launch/ecs: grant %s is a %s grant; ECS tasks serve session grants only", g.ID, g.Mode)
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("launch/ecs: %w", err)
	}
	// The task listens on every interface of its own network namespace; the
	// security group decides who may connect.
	gs := *g
	gs.Listen = net.JoinHostPort("0.0.0.0", strconv.Itoa(l.cfg.Port))
	tok, err := l.cfg.Wrapper.WrapGrant(ctx, &gs, l.cfg.WrapTTL)
	if err != nil {
		return nil, fmt.Errorf("launch/ecs: %w", err)
	}
	assign := types.AssignPublicIpDisabled
	if l.cfg.AssignPublicIP {
		assign = types.AssignPublicIpEnabled
	}
	out, err := l.cfg.Client.RunTask(ctx, &awsecs.RunTaskInput{
		Cluster:        aws.String(l.cfg.Cluster),
		TaskDefinition: aws.String(l.cfg.TaskDefinition),
		LaunchType:     types.LaunchTypeFargate,
		Count:          aws.Int32(1),
		StartedBy:      aws.String(StartedBy),
		Group:          aws.String(groupPrefix + g.ID),
		NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
			Subnets: l.cfg.Subnets, SecurityGroups: l.cfg.SecurityGroups, AssignPublicIp: assign,
		}},
		Overrides: &types.TaskOverride{ContainerOverrides: []types.ContainerOverride{{
			Name: aws.String(l.cfg.Container),
			Environment: []types.KeyValuePair{
				{Name: aws.String(EnvGrantID), Value: aws.String(g.ID)},
				{Name: aws.String(EnvWrapToken), Value: aws.String(tok)},
			},
		}}},
		Tags: []types.Tag{
			{Key: aws.String(TagGrant), Value: aws.String(g.ID)},
			{Key: aws.String(TagDeadline), Value: aws.String(g.Deadline.UTC().Format(time.RFC3339))},
		},
		PropagateTags:        types.PropagateTagsTaskDefinition,
		EnableECSManagedTags: true,
	})
	if err != nil {
		return nil, fmt.Errorf("launch/ecs: run task for grant %s: %w", g.ID, err)
	}
	if len(out.Failures) > 0 || len(out.Tasks) != 1 {
		var why []string
		for _, f := range out.Failures {
			why = append(why, aws.ToString(f.Reason)+" "+aws.ToString(f.Detail))
		}
		return nil, fmt.Errorf("launch/ecs: run task for grant %s: %d tasks started, failures: %s", g.ID, len(out.Tasks), strings.Join(why, "; "))
	}
	h := &handle{l: l, id: g.ID, arn: aws.ToString(out.Tasks[0].TaskArn), deadline: g.Deadline, done: make(chan struct{})}
	l.cfg.Logger.Info("session task started", "grant", g.ID, "task", h.arn)
	startCtx, cancel := context.WithTimeout(ctx, l.cfg.StartTimeout)
	defer cancel()
	addr, err := h.waitRunning(startCtx)
	if err != nil {
		// Never leave a task behind that nobody will watch.
		_, _ = l.stop(context.WithoutCancel(ctx), h.arn, "jitgate: did not start: "+err.Error())
		return nil, fmt.Errorf("launch/ecs: grant %s: %w", g.ID, err)
	}
	h.ready = spec.Status{Type: spec.StatusReady, GrantID: g.ID, Time: l.cfg.Now().UTC(), Addr: addr}
	return h, nil
}

func (l *Launcher) describe(ctx context.Context, arns ...string) ([]types.Task, error) {
	out, err := l.cfg.Client.DescribeTasks(ctx, &awsecs.DescribeTasksInput{
		Cluster: aws.String(l.cfg.Cluster), Tasks: arns, Include: []types.TaskField{types.TaskFieldTags},
	})
	if err != nil {
		return nil, fmt.Errorf("describe tasks: %w", err)
	}
	return out.Tasks, nil
}

func (l *Launcher) stop(ctx context.Context, arn, reason string) (bool, error) {
	if len(reason) > 255 {
		reason = reason[:255]
	}
	_, err := l.cfg.Client.StopTask(ctx, &awsecs.StopTaskInput{Cluster: aws.String(l.cfg.Cluster), Task: aws.String(arn), Reason: aws.String(reason)})
	if err != nil {
		return false, fmt.Errorf("stop task %s: %w", arn, err)
	}
	return true, nil
}

func (l *Launcher) sleep(ctx context.Context) error {
	t := time.NewTimer(l.cfg.PollEvery)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

type handle struct {
	l        *Launcher
	id, arn  string
	deadline time.Time
	ready    spec.Status

	mu       sync.Mutex
	stopping bool
	done     chan struct{}
	last     spec.Status
}

// waitRunning polls until the task is RUNNING and returns its private address.
func (h *handle) waitRunning(ctx context.Context) (string, error) {
	for {
		tasks, err := h.l.describe(ctx, h.arn)
		if err != nil {
			return "", err
		}
		if len(tasks) != 1 {
			return "", fmt.Errorf("task %s is gone", h.arn)
		}
		t := tasks[0]
		switch aws.ToString(t.LastStatus) {
		case "RUNNING":
			ip := privateIP(t)
			if ip == "" {
				return "", fmt.Errorf("task %s is running without a private IPv4 address", h.arn)
			}
			return net.JoinHostPort(ip, strconv.Itoa(h.l.cfg.Port)), nil
		case "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED", "DELETED":
			return "", fmt.Errorf("task %s stopped before running: %s", h.arn, stoppedWhy(t))
		}
		if err := h.l.sleep(ctx); err != nil {
			return "", fmt.Errorf("task %s not running after waiting: %w", h.arn, err)
		}
	}
}

func privateIP(t types.Task) string {
	for _, a := range t.Attachments {
		if aws.ToString(a.Type) != "ElasticNetworkInterface" {
			continue
		}
		for _, d := range a.Details {
			if aws.ToString(d.Name) == "privateIPv4Address" {
				return aws.ToString(d.Value)
			}
		}
	}
	return ""
}

func stoppedWhy(t types.Task) string {
	why := aws.ToString(t.StoppedReason)
	for _, c := range t.Containers {
		if c.ExitCode != nil && *c.ExitCode != 0 {
			why += fmt.Sprintf(" (container %s exit %d: %s)", aws.ToString(c.Name), *c.ExitCode, aws.ToString(c.Reason))
		}
	}
	if why == "" {
		why = "no reason given"
	}
	return why
}

// Ready returns the task's address (StatusReady).
func (h *handle) Ready(ctx context.Context) (spec.Status, error) { return h.ready, ctx.Err() }

// Wait polls until the task has stopped, stopping it once the grant's
// deadline plus StopGrace has passed. It returns StatusExit (with the
// recording's URI) when the task ended normally or at its deadline, and
// StatusError when its container failed.
func (h *handle) Wait(ctx context.Context) (spec.Status, error) {
	h.mu.Lock()
	select {
	case <-h.done:
		st := h.last
		h.mu.Unlock()
		return st, statusErr(st)
	default:
	}
	h.mu.Unlock()
	for {
		tasks, err := h.l.describe(ctx, h.arn)
		if err != nil {
			if ctx.Err() != nil {
				return spec.Status{}, ctx.Err()
			}
			h.l.cfg.Logger.Warn("describe session task", "grant", h.id, "err", err)
		} else if len(tasks) == 0 || aws.ToString(tasks[0].LastStatus) == "STOPPED" || aws.ToString(tasks[0].LastStatus) == "DELETED" {
			return h.finish(tasks)
		}
		if now := h.l.cfg.Now(); now.After(h.deadline.Add(h.l.cfg.StopGrace)) {
			h.mu.Lock()
			first := !h.stopping
			h.stopping = true
			h.mu.Unlock()
			if first {
				h.l.cfg.Logger.Warn("session task outlived its grant; stopping it", "grant", h.id, "task", h.arn)
				if _, err := h.l.stop(ctx, h.arn, "jitgate: grant deadline passed"); err != nil {
					h.l.cfg.Logger.Error("stop session task", "grant", h.id, "err", err)
				}
			}
		}
		if err := h.l.sleep(ctx); err != nil {
			return spec.Status{}, err
		}
	}
}

func (h *handle) finish(tasks []types.Task) (spec.Status, error) {
	st := spec.Status{Type: spec.StatusExit, GrantID: h.id, Time: h.l.cfg.Now().UTC(), Recording: h.l.cfg.RecordingURI(h.id)}
	if len(tasks) == 1 {
		for _, c := range tasks[0].Containers {
			if c.ExitCode != nil && *c.ExitCode != 0 {
				st = spec.Status{Type: spec.StatusError, GrantID: h.id, Time: st.Time, Code: spec.CodeInternal,
					Error: "session task failed: " + stoppedWhy(tasks[0]), Recording: st.Recording}
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done:
	default:
		h.last = st
		close(h.done)
	}
	return h.last, statusErr(h.last)
}

func statusErr(st spec.Status) error {
	if st.Type == spec.StatusError {
		return fmt.Errorf("launch/ecs: %s: %s", st.Code, st.Error)
	}
	return nil
}

// Stop stops the task now and waits (up to StartTimeout) until ECS reports it
// stopped.
func (h *handle) Stop() error {
	h.mu.Lock()
	h.stopping = true
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), h.l.cfg.StartTimeout)
	defer cancel()
	if _, err := h.l.stop(ctx, h.arn, "jitgate: session ended"); err != nil {
		return fmt.Errorf("launch/ecs: %w", err)
	}
	for {
		tasks, err := h.l.describe(ctx, h.arn)
		if err == nil && (len(tasks) == 0 || aws.ToString(tasks[0].LastStatus) == "STOPPED") {
			_, _ = h.finish(tasks)
			return nil
		}
		if err := h.l.sleep(ctx); err != nil {
			return fmt.Errorf("launch/ecs: task %s not stopped: %w", h.arn, err)
		}
	}
}

// Orphan is a task StopOrphans stopped.
type Orphan struct {
	GrantID, TaskARN, Reason string
}

// StopOrphans stops every running task this package started whose grant is
// past its deadline plus StopGrace, or for which live says the grant no
// longer runs (ended, revoked, unknown). A task without a readable grant id
// or deadline is stopped too: fail closed. live errors leave the task alone
// (it is retried on the next sweep) and are returned joined.
func (l *Launcher) StopOrphans(ctx context.Context, live func(ctx context.Context, grantID string) (bool, error)) ([]Orphan, error) {
	var arns []string
	var next *string
	for {
		out, err := l.cfg.Client.ListTasks(ctx, &awsecs.ListTasksInput{
			Cluster: aws.String(l.cfg.Cluster), StartedBy: aws.String(StartedBy), DesiredStatus: types.DesiredStatusRunning, NextToken: next,
		})
		if err != nil {
			return nil, fmt.Errorf("launch/ecs: list tasks: %w", err)
		}
		arns = append(arns, out.TaskArns...)
		if next = out.NextToken; next == nil {
			break
		}
	}
	var stopped []Orphan
	var errs []error
	now := l.cfg.Now()
	for len(arns) > 0 {
		n := min(len(arns), 100)
		tasks, err := l.describe(ctx, arns[:n]...)
		arns = arns[n:]
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range tasks {
			id, deadline := grantOf(t)
			reason := ""
			switch {
			case id == "":
				reason = "task carries no grant id"
			case deadline.IsZero():
				reason = "task carries no deadline"
			case now.After(deadline.Add(l.cfg.StopGrace)):
				reason = "grant deadline passed"
			default:
				ok, err := live(ctx, id)
				if err != nil {
					errs = append(errs, fmt.Errorf("grant %s: %w", id, err))
					continue
				}
				if !ok {
					reason = "grant is no longer active"
				}
			}
			if reason == "" {
				continue
			}
			arn := aws.ToString(t.TaskArn)
			if _, err := l.stop(ctx, arn, "jitgate sweeper: "+reason); err != nil {
				errs = append(errs, err)
				continue
			}
			l.cfg.Logger.Warn("stopped orphaned session task", "grant", id, "task", arn, "reason", reason)
			stopped = append(stopped, Orphan{GrantID: id, TaskARN: arn, Reason: reason})
		}
	}
	if len(errs) > 0 {
		return stopped, fmt.Errorf("launch/ecs: stop orphans: %w", errors.Join(errs...))
	}
	return stopped, nil
}

// grantOf reads the grant id (group, tag) and deadline (tag) of a task.
func grantOf(t types.Task) (string, time.Time) {
	id, _ := strings.CutPrefix(aws.ToString(t.Group), groupPrefix)
	var deadline time.Time
	for _, tag := range t.Tags {
		switch aws.ToString(tag.Key) {
		case TagGrant:
			if id == "" {
				id = aws.ToString(tag.Value)
			} else if id != aws.ToString(tag.Value) {
				return "", time.Time{} // group and tag disagree: treat as unknown
			}
		case TagDeadline:
			deadline, _ = time.Parse(time.RFC3339, aws.ToString(tag.Value))
		}
	}
	return id, deadline
}
