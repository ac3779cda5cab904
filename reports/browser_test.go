package reports

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium (the project's setup, .ci/deps.sh,
// installs it). LEDGERPROOF_CHROMIUM overrides.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if path := os.Getenv("LEDGERPROOF_CHROMIUM"); path != "" {
		return path
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	// The report's acceptance is that it opens in a real browser: a missing
	// browser fails the test rather than skipping the proof.
	t.Fatal("chromium not found: run .ci/deps.sh (CI installs the Debian chromium package), or set LEDGERPROOF_CHROMIUM")
	return ""
}

// pageCheck is what the page says about itself once its script ran.
type pageCheck struct {
	Ready           bool           `json:"ready"`
	Charts          int            `json:"charts"`
	Canvases        int            `json:"canvases"`
	Painted         map[string]int `json:"painted"`
	SeriesPixels    map[string]int `json:"seriesPixels"`
	ShadePixels     map[string]int `json:"shadePixels"`
	FaultWindows    int            `json:"faultWindows"`
	FaultAttribute  string         `json:"faultAttribute"`
	LegendRows      int            `json:"legendRows"`
	Shaded          map[string]int `json:"shaded"`
	Verdict         string         `json:"verdict"`
	ResourceEntries int            `json:"resourceEntries"`
}

// checkScript counts, per chart canvas, the painted pixels, the pixels of
// the chart's first series colour (its line), and the pixels of the first
// fault window's colour at the shading's alpha (the plugin's rectangle).
const checkScript = `(() => {
  const report = window.ledgerproofReport;
  const rgb = (hex) => { const n = parseInt(hex.slice(1), 16); return [(n >> 16) & 255, (n >> 8) & 255, n & 255]; };
  const near = (d, i, c, tolerance) => Math.abs(d[i] - c[0]) <= tolerance && Math.abs(d[i + 1] - c[1]) <= tolerance && Math.abs(d[i + 2] - c[2]) <= tolerance;
  const shade = report.faultWindows.length ? rgb(report.faultWindows[0].color) : null;
  const out = { painted: {}, seriesPixels: {}, shadePixels: {} };
  for (const chart of window.ledgerproofCharts || []) {
    const canvas = chart.ctx.canvas;
    const d = chart.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const line = rgb(chart.series[1].stroke());
    let painted = 0, series = 0, shaded = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      painted++;
      if (d[i + 3] > 200 && near(d, i, line, 10)) series++;
      if (shade && d[i + 3] < 90 && near(d, i, shade, 6)) shaded++;
    }
    out.painted[chart.ledgerproofId] = painted;
    out.seriesPixels[chart.ledgerproofId] = series;
    out.shadePixels[chart.ledgerproofId] = shaded;
  }
  return Object.assign(out, {
    ready: window.ledgerproofReady === true,
    charts: (window.ledgerproofCharts || []).length,
    canvases: document.querySelectorAll(".uplot canvas").length,
    faultWindows: report.faultWindows.length,
    faultAttribute: document.querySelector("#throughput-latency").dataset.faultWindows,
    legendRows: document.querySelectorAll("#fault-legend tbody tr").length,
    shaded: window.ledgerproofShaded,
    verdict: document.querySelector("#verdict").dataset.verdict,
    resourceEntries: performance.getEntriesByType("resource").length,
  });
})()`

func TestReportOpensOfflineInChromium(t *testing.T) {
	if testing.Short() {
		// A browser is the integration tier's, like the servers: make test
		// (no -short) runs this, and there a missing browser fails.
		t.Skip("opens the report in headless Chromium: not a -short test")
	}
	chromium := chromiumPath(t)
	base := t.TempDir()
	if os.Getenv("LEDGERPROOF_KEEP_REPORT") != "" {
		// Keep the rendered run (and its screenshot) to look at.
		kept, err := os.MkdirTemp("", "ledgerproof-report-")
		if err != nil {
			t.Fatal(err)
		}
		base = kept
	}
	runDir := copyRun(t, base)
	if _, err := Generate(runDir); err != nil {
		t.Fatal(err)
	}
	index, err := filepath.Abs(filepath.Join(runDir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	pageURL := (&url.URL{Scheme: "file", Path: index}).String()

	options := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(profileDir(t)),
		chromedp.WindowSize(1280, 1000),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	allocator, cancelAllocator := chromedp.NewExecAllocator(ctx, options...)
	t.Cleanup(cancelAllocator)
	browser, cancelBrowser := chromedp.NewContext(allocator)
	t.Cleanup(cancelBrowser)

	var mu sync.Mutex
	var requests, problems []string
	chromedp.ListenTarget(browser, func(event any) {
		mu.Lock()
		defer mu.Unlock()
		switch event := event.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, event.Request.URL)
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+event.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if event.Type == runtime.APITypeError || event.Type == runtime.APITypeAssert {
				text := ""
				for _, argument := range event.Args {
					text += " " + string(argument.Value) + argument.Description
				}
				problems = append(problems, "console."+string(event.Type)+":"+text)
			}
		case *log.EventEntryAdded:
			if event.Entry.Level == log.LevelError {
				problems = append(problems, fmt.Sprintf("log %s: %s %s", event.Entry.Source, event.Entry.Text, event.Entry.URL))
			}
		}
	})

	var check pageCheck
	var screenshot []byte
	err = chromedp.Run(browser,
		chromedp.Navigate(pageURL),
		chromedp.Poll("window.ledgerproofReady === true", nil, chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.Evaluate(checkScript, &check),
		chromedp.FullScreenshot(&screenshot, 100),
	)
	if err != nil {
		t.Fatalf("open the report in chromium: %v", err)
	}
	screenshotPath := filepath.Join(runDir, "screenshot.png")
	if err := os.WriteFile(screenshotPath, screenshot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", screenshotPath, len(screenshot))
	t.Logf("page: %+v; requests: %v", check, requests)

	mu.Lock()
	defer mu.Unlock()
	if len(requests) == 0 {
		t.Error("no request seen at all: the network listener did not work")
	}
	for _, request := range requests {
		if request != pageURL {
			t.Errorf("the page made a request other than its own file: %s", request)
		}
	}
	if check.ResourceEntries != 0 {
		t.Errorf("the page loaded %d resource(s); it must be self-contained", check.ResourceEntries)
	}
	for _, problem := range problems {
		t.Errorf("page error: %s", problem)
	}

	if !check.Ready {
		t.Error("the page's script did not finish")
	}
	wantCharts := []string{"chart-throughput", "chart-latency", "chart-lag", "chart-batch"}
	if check.Charts != len(wantCharts) || check.Canvases != len(wantCharts) {
		t.Errorf("%d charts with %d canvases, want %d", check.Charts, check.Canvases, len(wantCharts))
	}
	for _, chart := range wantCharts {
		if check.Painted[chart] == 0 {
			t.Errorf("%s: the canvas is blank", chart)
		}
		// The lag of the recorded run is zero throughout: its line lies on
		// the x axis, still drawn.
		if check.SeriesPixels[chart] < 20 {
			t.Errorf("%s: %d pixels of its first series' colour; the line is not drawn", chart, check.SeriesPixels[chart])
		}
		if check.Shaded[chart] != recordedFaultWindows {
			t.Errorf("%s: the plugin shaded %d fault windows, want %d", chart, check.Shaded[chart], recordedFaultWindows)
		}
		if check.ShadePixels[chart] < 100 {
			t.Errorf("%s: %d pixels of the first fault window's shade; the window is not drawn", chart, check.ShadePixels[chart])
		}
	}
	if check.FaultWindows != recordedFaultWindows || check.FaultAttribute != fmt.Sprint(recordedFaultWindows) || check.LegendRows != recordedFaultWindows {
		t.Errorf("fault windows: %d in the data, attribute %q, %d legend rows; want %d each",
			check.FaultWindows, check.FaultAttribute, check.LegendRows, recordedFaultWindows)
	}
	if check.Verdict != VerdictThresholdFailed {
		t.Errorf("the page's verdict is %q, want %q", check.Verdict, VerdictThresholdFailed)
	}
}

// profileDir is Chromium's user data directory. Chromium's helper processes
// may still write into it for a moment after the browser is gone, so the
// removal (which runs after the allocator's cancel: cleanups run last-in
// first-out) retries for a few seconds instead of failing the test as
// t.TempDir's would.
func profileDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ledgerproof-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := os.RemoveAll(dir)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("remove Chromium's profile %s: %v", dir, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return dir
}
