package main

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	plotTestBlue   = color.RGBA{31, 119, 180, 255}
	plotTestOrange = color.RGBA{255, 127, 14, 255}
	plotTestGoal   = color.RGBA{200, 0, 0, 255}
)

// plotTestChart is a typical chart: two series that do not cross (so no
// pixel of one hides the other at the probed points) and a goal line.
func plotTestChart() plotChart {
	var fast, slow [][2]float64
	for i := 1; i <= 10; i++ {
		x := float64(i)
		fast = append(fast, [2]float64{x, 1000 + 300*x})
		slow = append(slow, [2]float64{x, 200 + 50*x})
	}
	return plotChart{
		Title:  "Throughput by clients",
		XLabel: "clients",
		YLabel: "commands/s",
		Series: []plotSeries{
			{Name: "pipeline", Points: fast, Color: plotTestBlue},
			{Name: "sync", Points: slow, Color: plotTestOrange},
		},
		HLines: []plotHLine{{Y: 3500, Label: "goal", Color: plotTestGoal}},
	}
}

// plotTestDecode writes c to a temporary file and decodes it back, so that
// tests check the real PNG output.
func plotTestDecode(t *testing.T, c plotChart) image.Image {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chart.png")
	require.NoError(t, writePlotPNG(path, c))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	return img
}

// plotTestAt returns the color of one pixel as color.RGBA.
func plotTestAt(img image.Image, x, y int) color.RGBA {
	return color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
}

// plotTestCount counts the pixels of color c inside r.
func plotTestCount(img image.Image, r image.Rectangle, c color.RGBA) int {
	n := 0
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if plotTestAt(img, x, y) == c {
				n++
			}
		}
	}
	return n
}

func TestPlotWritePNG(t *testing.T) {
	c := plotTestChart()
	img := plotTestDecode(t, c)
	require.Equal(t, image.Rect(0, 0, plotDefaultWidth, plotDefaultHeight), img.Bounds())
	require.Equal(t, plotWhite, plotTestAt(img, 0, 0), "background")
	require.Equal(t, plotWhite, plotTestAt(img, plotDefaultWidth-1, plotDefaultHeight-1), "background")

	f := plotLayout(c)
	// Each series' line is in the plot area (not only the legend swatch),
	// and passes through its data points.
	for _, s := range c.Series {
		require.Greater(t, plotTestCount(img, f.area, s.Color), 300, s.Name)
		p := s.Points[4]
		px, py := f.toPixel(p[0], p[1])
		require.Equal(t, s.Color, plotTestAt(img, int(math.Round(px)), int(math.Round(py))), s.Name)
	}
	// The goal line is drawn, dashed: present, but not on every column.
	require.Greater(t, plotTestCount(img, f.area, plotTestGoal), 100)
	_, gy := f.toPixel(0, 3500)
	row := image.Rect(f.area.Min.X, int(math.Round(gy)), f.area.Max.X, int(math.Round(gy))+1)
	require.Less(t, plotTestCount(img, row, plotTestGoal), f.area.Dx())

	// Automatic y axis: starts at 0 and reaches above the data and goal.
	require.Equal(t, 0.0, f.ylo)
	require.GreaterOrEqual(t, f.yhi, 4000.0)
}

func TestPlotCustomSize(t *testing.T) {
	c := plotTestChart()
	c.Width, c.Height = 640, 360
	img := plotTestDecode(t, c)
	require.Equal(t, image.Rect(0, 0, 640, 360), img.Bounds())
}

func TestPlotEdgeCases(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	cases := map[string]plotChart{
		"empty":        {},
		"no series":    {Title: "nothing", HLines: []plotHLine{{Y: 5, Label: "goal"}}},
		"no points":    {Series: []plotSeries{{Name: "a"}}},
		"one point":    {Series: []plotSeries{{Name: "a", Points: [][2]float64{{3, 4}}}}},
		"equal y":      {Series: []plotSeries{{Points: [][2]float64{{1, 7}, {2, 7}, {3, 7}}}}},
		"zero y":       {Series: []plotSeries{{Points: [][2]float64{{1, 0}, {2, 0}}}}},
		"zero x range": {Series: []plotSeries{{Points: [][2]float64{{5, 1}, {5, 2}, {5, 3}}}}},
		"nan and inf": {Series: []plotSeries{{Points: [][2]float64{
			{nan, 1}, {1, 2}, {2, nan}, {3, inf}, {inf, 4}, {4, -inf}, {5, 3},
		}}}},
		"only nan":  {Series: []plotSeries{{Points: [][2]float64{{nan, nan}}}}},
		"negative":  {Series: []plotSeries{{Points: [][2]float64{{0, -5}, {1, 3}}}}},
		"huge":      {Series: []plotSeries{{Points: [][2]float64{{-1e308, -1e308}, {1e308, 1e308}}}}},
		"tiny span": {Series: []plotSeries{{Points: [][2]float64{{1, 1}, {1 + 1e-15, 1 + 1e-15}}}}},
		"fixed y, points and hline outside": {
			YMin: 10, YMax: 20,
			Series: []plotSeries{{Points: [][2]float64{{0, 0}, {1, 100}, {2, 15}}}},
			HLines: []plotHLine{{Y: 50, Label: "off chart"}, {Y: nan}},
		},
		"bad fixed y": {YMin: 5, YMax: 1, Series: []plotSeries{{Points: [][2]float64{{0, 1}, {1, 2}}}}},
		"tiny image":  {Width: 5, Height: 3, Title: "t", Series: []plotSeries{{Points: [][2]float64{{0, 1}, {1, 2}}}}},
		"long name":   {Series: []plotSeries{{Name: string(make([]byte, 200)), Points: [][2]float64{{0, 1}, {1, 2}}}}},
		"many series": {Height: 60, Series: make([]plotSeries, 30)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			img := plotTestDecode(t, c)
			w, h := c.Width, c.Height
			if w <= 0 {
				w = plotDefaultWidth
			}
			if h <= 0 {
				h = plotDefaultHeight
			}
			require.Equal(t, image.Rect(0, 0, w, h), img.Bounds())
		})
	}
}

func TestPlotZeroColorsUsePalette(t *testing.T) {
	c := plotChart{Series: []plotSeries{
		{Name: "a", Points: [][2]float64{{0, 1}, {1, 2}}},
		{Name: "b", Points: [][2]float64{{0, 3}, {1, 4}}},
	}}
	img := plotTestDecode(t, c)
	f := plotLayout(c)
	require.Greater(t, plotTestCount(img, f.area, plotPalette[0]), 100)
	require.Greater(t, plotTestCount(img, f.area, plotPalette[1]), 100)
}

func TestPlotWriteError(t *testing.T) {
	err := writePlotPNG(filepath.Join(t.TempDir(), "missing-dir", "chart.png"), plotTestChart())
	require.Error(t, err)
}

func TestPlotTicks(t *testing.T) {
	for _, r := range [][2]float64{
		{0, 1}, {0, 4300}, {0.1, 0.35}, {-7, 13}, {1, 10}, {0, 1e9}, {123456, 123999}, {0, 3e-6},
	} {
		for _, extend := range []bool{false, true} {
			lo, hi, ticks, step := plotTicks(r[0], r[1], extend)
			// 5 to 8 ticks, except where no 1-2-5 step allows it (-7..13
			// gets 4 ticks of 5, or would get 10 of 2).
			require.GreaterOrEqual(t, len(ticks), 4, "%v extend=%v", r, extend)
			require.LessOrEqual(t, len(ticks), 8, "%v extend=%v", r, extend)
			// The step is 1, 2 or 5 times a power of ten.
			m := step / math.Pow(10, math.Floor(math.Log10(step)))
			require.Contains(t, []float64{1, 2, 5}, math.Round(m*1e6)/1e6, "step %v", step)
			if extend {
				require.LessOrEqual(t, lo, r[0])
				require.GreaterOrEqual(t, hi, r[1])
				require.InDelta(t, lo, ticks[0], step*1e-6)
				require.InDelta(t, hi, ticks[len(ticks)-1], step*1e-6)
			} else {
				require.Equal(t, r[0], lo)
				require.GreaterOrEqual(t, ticks[0], lo-step*1e-6)
				require.LessOrEqual(t, ticks[len(ticks)-1], hi+step*1e-6)
			}
		}
	}
}

func TestPlotFormatTick(t *testing.T) {
	for _, tc := range []struct {
		v, step float64
		want    string
	}{
		{0, 1, "0"},
		{3, 1, "3"},
		{0.30000000000000004, 0.1, "0.3"},
		{2.5, 0.5, "2.5"},
		{1500, 500, "1500"},
		{-20, 10, "-20"},
		{1.5e7, 5e6, "1.5e7"},
		{2e-5, 1e-5, "2e-5"},
		{123500, 100, "123500"},
		{0.0010000000000000002, 0.0005, "0.001"},
		{0.0015, 0.0005, "0.0015"},
		{2, 0.5, "2"},
	} {
		require.Equal(t, tc.want, plotFormatTick(tc.v, tc.step), "%v step %v", tc.v, tc.step)
	}
}

// TestPlotExample writes plotTestChart to the file named by $PLOT_EXAMPLE,
// to look at the rendering by eye:
//
//	PLOT_EXAMPLE=/tmp/plot_example.png go test ./cmd/ragobench/ -run PlotExample
func TestPlotExample(t *testing.T) {
	path := os.Getenv("PLOT_EXAMPLE")
	if path == "" {
		t.Skip("set PLOT_EXAMPLE to a file name to write the example chart")
	}
	require.NoError(t, writePlotPNG(path, plotTestChart()))
}
