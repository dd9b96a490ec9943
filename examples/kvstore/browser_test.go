package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
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

// browser is a headless Chromium for a test.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts a headless Chromium with the given extra options, or
// skips the test when none is installed. It stops with the test.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	bin := findChromium()
	if bin == "" {
		t.Skip("no chromium binary found (looked for chromium, chromium-browser, google-chrome, headless-shell in PATH); install Debian's chromium to run the browser test")
	}
	// Chromium's own background connections (updates, sync) would go
	// nowhere on a machine without outside network: switch them off, and
	// start from a fresh profile.
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	// The first run starts the browser and must not carry a timeout (it
	// would stop the browser); later steps get one each.
	require.NoError(t, chromedp.Do(ctx))
	return &browser{t: t, ctx: ctx}
}

// step runs actions, within waitFor.
func (b *browser) step(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...))
}

// poll waits until expr, evaluated in the page, is a non-empty string,
// and returns it.
func (b *browser) poll(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[string](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitFor)))
	require.NoError(b.t, err, "waiting in the page for %s", expr)
	return v
}

// testWebPage drives the web page in a headless Chromium: it puts a key
// through the form and waits for it on every member's panel, then kills
// the leader and watches the page mark it unreachable and name a new
// leader, then restarts it and watches it come back. Then it kills the
// page's own node, and the page carries on through another one. Last it
// takes two of three nodes down, and the header says there is no quorum.
func testWebPage(t *testing.T, c *testCluster) {
	b := newBrowser(t)
	browser, step, poll := b.ctx, b.step, b.poll

	// The page of a follower, so that the leader can be killed under it.
	page := c.followers()[0]
	step(chromedp.Navigate(page.url() + "/"))
	for _, p := range c.nodes {
		step(chromedp.WaitVisible(chromedp.CSS(`.member[data-member="` + p.id + `"]`)))
	}
	// These nodes have no API token: the page asks for none.
	hidden, err := chromedp.Run(browser, chromedp.Evaluate[bool](`document.querySelector("#tokenrow").hidden`))
	require.NoError(t, err)
	require.True(t, hidden, "the token field shows on a node without a token")

	const key, value = "from-the-browser", "typed into the form"
	step(
		chromedp.SendKeys(chromedp.CSS("#key"), key),
		chromedp.SendKeys(chromedp.CSS("#value"), value),
		chromedp.Click(chromedp.CSS("#put")),
		chromedp.WaitVisible(chromedp.CSS("#result.ok")),
	)
	got, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("#result")))
	require.NoError(t, err)
	require.Contains(t, got, "created "+key)

	// Every member's panel lists the key among the changes it applied,
	// and the recent-keys table shows its value.
	for _, p := range c.nodes {
		step(chromedp.WaitVisible(chromedp.CSS(`.member[data-member="` + p.id + `"] .recent-keys li[data-key="` + key + `"]`)))
	}
	step(chromedp.WaitVisible(chromedp.CSS(`#recent tr[data-key="` + key + `"]`)))
	row, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(`#recent tr[data-key="`+key+`"]`)))
	require.NoError(t, err)
	require.Contains(t, row, value)

	// Get through the form, linearizably.
	step(chromedp.Click(chromedp.CSS("#get")))
	poll(`document.querySelector("#result").textContent.includes("linearizable read served by") && document.querySelector("#result").textContent`)
	got, err = chromedp.Run(browser, chromedp.Text(chromedp.CSS("#result")))
	require.NoError(t, err)
	require.Contains(t, got, `"`+value+`"`)

	// Kill the leader: its panel turns unreachable and another member is
	// highlighted as the leader.
	old := c.leader(page)
	step(chromedp.WaitVisible(chromedp.CSS(`.member.leader[data-member="` + old.id + `"]`)))
	c.kill(old)
	step(chromedp.WaitVisible(chromedp.CSS(`.member.unreachable[data-member="` + old.id + `"]`)))
	newLeader := poll(`(() => { const l = document.querySelector(".member.leader"); return l && l.dataset.member !== "` + old.id + `" ? l.dataset.member : ""; })()`)
	require.NotEqual(t, old.id, newLeader)
	require.NotNil(t, c.node(newLeader))
	poll(`!document.querySelector("header.noquorum") ? "quorum" : ""`) // two of three still make one

	// Restart it: the page shows it reachable again, back from an absence.
	c.start(old)
	state := poll(`(() => { const m = document.querySelector('.member[data-member="` + old.id + `"]'); return m && !m.classList.contains("unreachable") ? m.querySelector(".state").textContent : ""; })()`)
	require.True(t, strings.Contains(state, "back") || strings.Contains(state, "catching up"), "state %q", state)
	c.waitHealthy()

	// Kill the node that served the page: the page goes on with another
	// member's view and says so; when its node returns, it goes back.
	c.kill(page)
	banner := poll(`(() => { const b = document.querySelector("#banner.show"); return b ? b.textContent : ""; })()`)
	require.Contains(t, banner, "does not answer")
	step(chromedp.WaitVisible(chromedp.CSS(`.member.unreachable[data-member="` + page.id + `"]`)))
	c.start(page)
	poll(`!document.querySelector("#banner.show") && !document.querySelector('.member.unreachable[data-member="` + page.id + `"]') ? "back" : ""`)
	c.waitHealthy()

	// Two of three down: the header turns red and says that writes fail;
	// it clears once a majority is back.
	var others []*proc
	for _, p := range c.nodes {
		if p != page {
			others = append(others, p)
		}
	}
	for _, p := range others {
		c.kill(p)
	}
	warning := poll(`(() => { const w = document.querySelector("header.noquorum #noquorum"); return w ? w.textContent : ""; })()`)
	require.Contains(t, warning, "no quorum")
	// A write is refused, in words before the error chain.
	step(chromedp.Click(chromedp.CSS("#put")))
	refused := poll(`(() => { const r = document.querySelector("#result.error"); return r ? r.textContent : ""; })()`)
	require.True(t, strings.HasPrefix(refused, "No quorum: too few nodes answer"), "the page says %q", refused)
	require.Contains(t, refused, "details: 503 no_quorum")
	for _, p := range others {
		c.start(p)
	}
	poll(`!document.querySelector("header.noquorum") ? "quorum" : ""`)
	c.waitHealthy()
}
