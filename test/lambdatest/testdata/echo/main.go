// Command echo is a test function for lambdatest: it answers with the event
// and one configured variable, fails when asked to, and crashes when asked to.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Say   string `json:"say"`
	Fail  bool   `json:"fail"`
	Crash bool   `json:"crash"`
}

type reply struct {
	Said     string `json:"said"`
	Greeting string `json:"greeting"`
	Secret   string `json:"aws_secret"`
}

func main() {
	lambda.Start(func(ctx context.Context, e event) (reply, error) {
		if e.Crash {
			os.Exit(3)
		}
		if e.Fail {
			return reply{}, errors.New("asked to fail")
		}
		return reply{Said: e.Say, Greeting: os.Getenv("GREETING"), Secret: os.Getenv("AWS_SECRET_ACCESS_KEY")}, nil
	})
}
