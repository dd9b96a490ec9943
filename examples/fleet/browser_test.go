package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/internal/exampletest"
)

// findChromium returns the path of a Chromium or Chrome binary, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless Chromium, or skips the test when none is
// installed. It stops with the test.
func newBrowser(t *testing.T) context.Context {
	bin := findChromium()
	if bin == "" {
		t.Skip("no chromium binary found (looked for chromium, chromium-browser, google-chrome, headless-shell in PATH); install Debian's chromium to run the browser test")
	}
	// Chromium's own background connections would go nowhere on a machine
	// without outside network: switch them off, from a fresh profile.
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000))
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	// The first run starts the browser and must not carry a timeout (it
	// would stop the browser).
	require.NoError(t, chromedp.Do(ctx))
	return ctx
}

// TestWebPage drives the placement page of a demo fleet in a headless
// Chromium: a column per node with its zone, one cell per group, the
// leaders counted; a key put through the form; then a node deactivated
// through the demo's prompt loses every cell's role on the page.
func TestWebPage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	browser := newBrowser(t)
	raftPort := exampletest.FreeRange(t, 5)
	httpPort := exampletest.FreeRange(t, 5, raftPort)
	d := bin.StartDemo(t, "--data", t.TempDir(), "--raft-port", strconv.Itoa(raftPort), "--http-port", strconv.Itoa(httpPort), "--shards", "12")
	d.Out.WaitFor(t, "Started a fleet of 5 nodes")
	page := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitPlacement(t, page, 5, 13)

	step := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, waitFor)
		defer cancel()
		require.NoError(t, chromedp.Do(ctx, actions...))
	}
	poll := func(expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, waitFor)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Poll[string](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitFor)))
		require.NoError(t, err, "waiting in the page for %s", expr)
		return v
	}

	step(chromedp.Navigate(page + "/"))
	for i := 1; i <= 5; i++ {
		step(chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`.node[data-node="n%d"] .grid i`, i))))
	}
	// Every node shows every group; n5, alone in zone c, has every group.
	cells := poll(`document.querySelectorAll('.node[data-node="n5"] .grid i').length === 13 ? "13" : ""`)
	require.Equal(t, "13", cells)
	poll(`document.querySelectorAll('.node[data-node="n5"] .grid i.v, .node[data-node="n5"] .grid i.l').length === 13 ? "all" : ""`)
	leaders := poll(`(() => { let s = 0; document.querySelectorAll(".grid i.l").forEach(() => s++); return s === 13 ? "13" : ""; })()`)
	require.Equal(t, "13", leaders, "one leader cell per group")

	step(
		chromedp.SendKeys(chromedp.CSS("#key"), "from-the-browser"),
		chromedp.SendKeys(chromedp.CSS("#value"), "typed into the form"),
		chromedp.Click(chromedp.CSS("#put")),
		chromedp.WaitVisible(chromedp.CSS("#result.ok")),
	)
	poll(`document.querySelector(".grid i.hl") ? "highlighted" : ""`)
	r := call(t, http.MethodGet, page+"/kv/from-the-browser?raw=1", "")
	require.Equal(t, "typed into the form", string(r.body))

	d.Send(t, "deactivate n2")
	poll(`document.querySelector('.node.deactivating[data-node="n2"]') ? "shown" : ""`)
	poll(`document.querySelectorAll('.node[data-node="n2"] .grid i.v, .node[data-node="n2"] .grid i.l, .node[data-node="n2"] .grid i.n').length === 0 ? "empty" : ""`)
	d.Stop(t)
}
