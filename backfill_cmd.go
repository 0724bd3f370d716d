package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/backfill"
	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/source"
)

type backfillFlags struct {
	start, end, source, output *string
}

// runBackfill is the backfill subcommand: exit 0 when the whole range was
// written, 1 when a part failed (what succeeded is still written) or the
// input is wrong.
func runBackfill(configFile string, f backfillFlags, stdout, stderr io.Writer) int {
	cfg, err := config.Load(configFile)
	if err != nil {
		printProblems(stderr, configFile, err)
		return 1
	}
	start, err1 := calendar.Parse(time.DateOnly, *f.start)
	end, err2 := calendar.Parse(time.DateOnly, *f.end)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintf(stderr, "backfill: --start and --end are days written YYYY-MM-DD: %v\n", err)
		return 1
	}
	// Run checks the range too; checking here first leaves no empty
	// output file behind a refused range.
	if err := backfill.CheckRange(start, end, time.Now(), cfg.Global.Location); err != nil {
		fmt.Fprintf(stderr, "backfill: %v\n", err)
		return 1
	}
	out, name := stdout, "standard output"
	if *f.output != "-" {
		file, err := os.Create(*f.output)
		if err != nil {
			fmt.Fprintf(stderr, "backfill: %v\n", err)
			return 1
		}
		defer file.Close()
		out, name = file, *f.output
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	began := time.Now()
	rep, err := backfill.Run(ctx, backfill.Options{
		Config: cfg, ConfigFile: configFile, Start: start, End: end, Source: *f.source, Now: time.Now(),
		Progress: stderr, Terminal: isTerminal(stderr), Deps: source.Deps{},
	}, out)
	if err != nil {
		fmt.Fprintf(stderr, "backfill: %v\n", err)
		return 1
	}
	fmt.Fprint(stderr, rep.Summary())
	fmt.Fprintf(stderr, "wrote %s in %s\n", name, time.Since(began).Round(time.Millisecond))
	if *f.output != "-" {
		fmt.Fprintf(stderr, "next: promtool tsdb create-blocks-from openmetrics %s DATA_DIR\n", *f.output)
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
