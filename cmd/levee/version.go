package main

import (
	"fmt"
	"io"

	"github.com/levee-dev/levee/internal/buildinfo"
)

func init() {
	register(command{
		name:    "version",
		summary: "print the version of this binary",
		run: func(args []string, stdout, stderr io.Writer) error {
			fmt.Fprintln(stdout, buildinfo.String())
			return nil
		},
	})
}
