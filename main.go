// Command wechat_retention_exporter serves WeCom group-customer and WeChat
// mini-program retention statistics as Prometheus metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
	_ "time/tzdata" // Asia/Shanghai must work in a scratch container.

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/wechat-retention/wechat_retention_exporter/collector"
	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/exposition"
	"github.com/wechat-retention/wechat_retention_exporter/scheduler"
	"github.com/wechat-retention/wechat_retention_exporter/source"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/statuspage"
)

const exporterName = "wechat_retention_exporter"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New(exporterName, "Prometheus exporter for WeCom group customers by tag (wshoto) and WeChat mini-program visit retention.")
	app.UsageWriter(stderr).ErrorWriter(stderr)
	configFile := app.Flag("config.file", "Configuration file.").Default("exporter.yml").String()
	metricsPath := app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
	maxRequests := app.Flag("web.max-requests", "Maximum number of parallel scrape requests; 0 disables the limit.").Default("40").Int()
	stateFile := app.Flag("scheduler.state-file", "File where the exporter keeps when each upstream published on previous days, so polling stays tight across restarts; empty keeps it in memory only.").Default("").String()
	demo := app.Flag("demo", "Serve against the built-in simulator of the upstreams; no credentials needed, --config.file is ignored.").Bool()
	toolkitFlags := kingpinflag.AddFlags(app, ":9866")
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)
	app.Version(version.Print(exporterName))
	app.HelpFlag.Short('h')
	app.Command("serve", "Serve metrics (the default).").Default()
	checkCmd := app.Command("check-config", "Validate the configuration file, print every problem, exit 1 if there is one.")
	backfillCmd := app.Command("backfill", "Write the upstreams' history as OpenMetrics text with timestamps, for promtool tsdb create-blocks-from openmetrics.")
	bf := backfillFlags{
		start:  backfillCmd.Flag("start", "First day of the range, YYYY-MM-DD.").Required().String(),
		end:    backfillCmd.Flag("end", "Last day of the range, YYYY-MM-DD; before today (data is published T+1).").Required().String(),
		source: backfillCmd.Flag("source", "Only this source: wshoto or wechat_miniprogram.").Enum("wshoto", "wechat_miniprogram"),
		output: backfillCmd.Flag("output", "File to write; - for standard output.").Default("-").String(),
	}

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exporterName, err)
		return 2
	}
	switch cmd {
	case checkCmd.FullCommand():
		return checkConfig(*configFile, stdout)
	case backfillCmd.FullCommand():
		return runBackfill(*configFile, bf, stdout, stderr)
	}

	logConfig.Writer = stderr
	logger := promslog.New(logConfig)
	logger.Info("starting "+exporterName, "version", version.Info(), "build_context", version.BuildContext())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	load := func() (*config.Config, error) { return config.Load(*configFile) }
	if *demo {
		d, err := startDemo()
		if err != nil {
			logger.Error("cannot start the demo upstreams", "err", err)
			return 1
		}
		defer d.Close()
		load = d.Config
		logger.Info("demo mode: serving simulated upstreams", "upstreams", d.String())
	}

	pubs, err := scheduler.LoadStore(*stateFile)
	if err != nil {
		logger.Warn("scheduler state file unreadable; publication times will be learned again", "err", err)
	}
	srv, err := newServer(ctx, logger, load, source.Deps{Publications: pubs})
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				logger.Error("invalid configuration", "problem", p.String())
			}
		} else {
			logger.Error("cannot start", "err", err)
		}
		return 1
	}
	defer srv.manager.Stop()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go srv.reloadLoop(ctx, hup)

	httpServer := &http.Server{Handler: srv.handler(*metricsPath, *maxRequests), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(httpServer, toolkitFlags, logger) }()
	select {
	case err := <-serveErr:
		logger.Error("HTTP server failed", "err", err)
		return 1
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = httpServer.Shutdown(shutdownCtx)
	return 0
}

func checkConfig(file string, out io.Writer) int {
	cfg, err := config.Load(file)
	if err != nil {
		if n := printProblems(out, file, err); n > 0 {
			fmt.Fprintf(out, "%s: %d problem(s)\n", file, n)
		}
		return 1
	}
	fmt.Fprintf(out, "%s: valid: %s\n", file, cfg.Summary())
	return 0
}

// printProblems writes each problem of a configuration error on a line of
// its own (file:line: path: message) and returns how many; another error
// is written after the file name.
func printProblems(out io.Writer, file string, err error) int {
	var ps config.Problems
	if !errors.As(err, &ps) {
		fmt.Fprintf(out, "%s: %v\n", file, err)
		return 0
	}
	for _, p := range ps {
		fmt.Fprintln(out, p.String())
	}
	return len(ps)
}

// server is the running exporter: its targets, registry and reloads.
type server struct {
	logger   *slog.Logger
	load     func() (*config.Config, error)
	deps     source.Deps
	set      *state.Set
	manager  *scheduler.Manager
	registry *prometheus.Registry // live: health, Go, process, build
	data     *prometheus.Registry // the upstreams' values, cached per snapshot
	reloads  chan chan error
	loc      atomic.Pointer[time.Location] // of the running configuration

	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
}

func newServer(ctx context.Context, logger *slog.Logger, load func() (*config.Config, error), deps source.Deps) (*server, error) {
	s := &server{
		logger: logger, load: load, deps: deps,
		set:      &state.Set{},
		registry: prometheus.NewRegistry(),
		data:     prometheus.NewRegistry(),
		reloads:  make(chan chan error),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: exporterName + "_config_last_reload_successful",
			Help: "1 if the last configuration load succeeded, 0 if it failed and the previous configuration is still in use.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: exporterName + "_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load.",
		}),
	}
	s.deps.Logger = logger
	s.deps.Existing = s.set.Get
	if s.deps.Publications == nil {
		s.deps.Publications = &scheduler.Store{}
	}
	s.manager = scheduler.NewManager(ctx, s.set)
	live, data := s.collectors()
	s.registry.MustRegister(live...)
	s.data.MustRegister(data)
	if err := s.apply(); err != nil {
		return nil, err
	}
	return s, nil
}

// collectors are what /metrics serves: the live ones, gathered at each
// scrape, and the data, encoded once per set of snapshots.
func (s *server) collectors() (live []prometheus.Collector, data prometheus.Collector) {
	return []prometheus.Collector{
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collector.NewSelf(s.set),
		s.reloadOK, s.reloadTime,
	}, collector.NewData(s.set)
}

// apply loads the configuration and, if it is valid, makes it the running
// one. A bad configuration leaves the running targets untouched.
func (s *server) apply() error {
	cfg, err := s.load()
	if err == nil {
		var units []scheduler.Unit
		if units, err = source.Units(cfg, s.deps); err == nil {
			s.manager.Apply(units)
			s.loc.Store(cfg.Global.Location)
			s.reloadOK.Set(1)
			s.reloadTime.SetToCurrentTime()
			s.logger.Info("configuration loaded", "targets", cfg.Summary())
			return nil
		}
	}
	s.reloadOK.Set(0)
	return err
}

// reloadLoop is the one goroutine that reloads, on SIGHUP or /-/reload.
func (s *server) reloadLoop(ctx context.Context, hup <-chan os.Signal) {
	for {
		var reply chan error
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case reply = <-s.reloads:
		}
		err := s.apply()
		if err != nil {
			s.logger.Error("reload failed; the previous configuration stays in use", "err", err)
		}
		if reply != nil {
			reply <- err
		}
	}
}

func (s *server) handler(metricsPath string, maxRequests int) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(metricsPath, promhttp.InstrumentMetricHandler(s.registry,
		exposition.New(s.registry, s.data, s.set, s.logger, maxRequests)))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !s.set.Ready() {
			http.Error(w, "Not ready: waiting for the first refresh of every target", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready")
	})
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "Only POST reloads the configuration", http.StatusMethodNotAllowed)
			return
		}
		reply := make(chan error, 1)
		select {
		case s.reloads <- reply:
		case <-r.Context().Done():
			return
		}
		if err := <-reply; err != nil {
			http.Error(w, "Reload failed; the previous configuration stays in use:\n"+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "Reloaded")
	})
	mux.Handle("/status", statuspage.Handler(s.set, s.loc.Load))
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "WeChat Retention Exporter",
		Description: "WeCom group customers by tag and WeChat mini-program visit retention",
		Version:     version.Info(),
		Profiling:   "false",
		Links: []web.LandingLinks{
			{Address: metricsPath, Text: "Metrics"},
			{Address: "/status", Text: "Status", Description: "What each target is doing"},
			{Address: "/-/healthy", Text: "Health"},
			{Address: "/-/ready", Text: "Readiness"},
		},
	})
	if err != nil {
		panic(err) // static configuration: a failure is a programming error
	}
	mux.Handle("/", landing)
	return mux
}
