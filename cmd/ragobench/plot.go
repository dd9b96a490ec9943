package main

// A small, dependency-light PNG line-chart writer, so that benchmark results
// can be turned into figures without an external plotting tool. Only the
// standard library's image packages are used, plus x/image's fixed-size
// bitmap font for text: the result is plain but legible and reproducible.

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// plotSeries is one line of a chart.
type plotSeries struct {
	Name string
	// Points are (x, y) pairs in x order. Points with a NaN or infinite
	// coordinate are skipped and break the line there.
	Points [][2]float64
	// Color of the line; its alpha is ignored (lines are opaque), and the
	// zero value picks a color from a built-in palette.
	Color color.RGBA
}

// plotHLine is a horizontal reference line, such as a goal.
type plotHLine struct {
	Y     float64
	Label string
	// Color of the line and its label; the zero value means dark red.
	Color color.RGBA
}

// plotChart describes a chart.
type plotChart struct {
	Title, XLabel, YLabel string
	Series                []plotSeries
	// HLines are horizontal reference lines (e.g. a goal), drawn dashed
	// with a label.
	HLines []plotHLine
	// YMin, YMax fix the y axis; 0,0 = automatic (from data and HLines,
	// always including 0, rounded out to whole ticks).
	YMin, YMax float64
	// Width, Height in pixels; 0 (or less) = 900x500.
	Width, Height int
}

const (
	plotDefaultWidth  = 900
	plotDefaultHeight = 500
	// plotMaxMarkers: series with at most this many points get a marker on
	// each point, so that sparse data (a few runs) shows where it was
	// measured; dense series would just look blotchy.
	plotMaxMarkers = 40
	// plotMaxNameChars bounds legend entries so a long name cannot eat the
	// plot area.
	plotMaxNameChars = 32
	plotTickLen      = 5
	plotDashOn       = 8
	plotDashPeriod   = 13
)

var (
	// plotFace is a fixed 7x13 pixel font: ASCII only, 11 px ascent.
	plotFace = basicfont.Face7x13

	plotWhite     = color.RGBA{255, 255, 255, 255}
	plotTextColor = color.RGBA{30, 30, 30, 255}
	plotAxisColor = color.RGBA{60, 60, 60, 255}
	plotGridColor = color.RGBA{225, 225, 225, 255}
	plotZeroColor = color.RGBA{170, 170, 170, 255}
	plotHLineRed  = color.RGBA{190, 30, 30, 255}
	// plotPalette (Tableau 10) for series without a color: distinct hues
	// that stay distinguishable on white.
	plotPalette = []color.RGBA{
		{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255},
		{214, 39, 40, 255}, {148, 103, 189, 255}, {140, 86, 75, 255},
		{227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255},
		{23, 190, 207, 255},
	}
)

// writePlotPNG renders c and writes it as a PNG file at path.
func writePlotPNG(path string, c plotChart) error {
	img := plotRender(c)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	// Close reports delayed write errors, so it must not be ignored.
	return f.Close()
}

// plotFrame is the computed layout of a chart: image size, the plot area
// (where data pixels go) and the data ranges and ticks of both axes.
type plotFrame struct {
	width, height    int
	area             image.Rectangle
	xlo, xhi         float64
	ylo, yhi         float64
	xticks, yticks   []float64
	xlabels, ylabels []string
	legend           []string // one entry per series
}

// toPixel maps data coordinates to (fractional) pixel coordinates; the
// result may lie outside the plot area, or be NaN for non-finite input.
func (f plotFrame) toPixel(x, y float64) (float64, float64) {
	a := f.area
	px := float64(a.Min.X) + (x-f.xlo)/(f.xhi-f.xlo)*float64(a.Dx()-1)
	py := float64(a.Max.Y-1) - (y-f.ylo)/(f.yhi-f.ylo)*float64(a.Dy()-1)
	return px, py
}

// plotFinite reports whether v is an ordinary number.
func plotFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// plotSaneRange turns [lo, hi] into a usable axis range: a degenerate range
// (a single value) is widened around it, and anything unusable (unordered,
// non-finite, too wide to subtract) falls back to [0, 1]. Nothing is drawn
// wrongly as a result, at worst data falls outside the area and is clipped.
func plotSaneRange(lo, hi float64) (float64, float64) {
	if lo == hi && plotFinite(lo) {
		d := math.Abs(lo) * 0.1
		if d == 0 {
			d = 1
		}
		lo, hi = lo-d, hi+d
	}
	if span := hi - lo; !plotFinite(span) || !(span > 0) {
		return 0, 1
	}
	return lo, hi
}

// plotTicks picks a "nice" step (1, 2 or 5 x 10^k) giving about 6 ticks,
// at least 5 and at most 8 when possible, and returns the ticks in range.
// With extend, the range is first rounded out to whole steps, so the axis
// starts and ends on a tick (used for the automatic y axis).
func plotTicks(lo, hi float64, extend bool) (nlo, nhi float64, ticks []float64, step float64) {
	span := hi - lo
	mag := math.Pow(10, math.Floor(math.Log10(span/6)))
	if !(mag > 0) || !plotFinite(mag) {
		// A span so tiny or huge that steps cannot be formed: just label
		// the ends.
		return lo, hi, []float64{lo, hi}, span
	}
	bestScore := math.Inf(1)
	var bestFirst, bestN float64
	for _, m := range []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50} {
		s := m * mag
		var first, last float64
		if extend {
			first, last = math.Floor(lo/s), math.Ceil(hi/s)
		} else {
			// The small tolerance keeps ends that are a tick up to
			// rounding (0.3/0.1 = 2.9999999999999996).
			first, last = math.Ceil(lo/s-1e-9), math.Floor(hi/s+1e-9)
		}
		n := last - first + 1
		score := math.Abs(n - 6)
		if n < 5 || n > 8 {
			score += 100
		}
		if score < bestScore {
			bestScore, step, bestFirst, bestN = score, s, first, n
		}
	}
	nlo, nhi = lo, hi
	if extend {
		nlo, nhi = bestFirst*step, (bestFirst+bestN-1)*step
	}
	// Ticks are computed as (first+i)*step rather than by repeated
	// addition, so that errors do not accumulate; the count is capped as a
	// guard against pathological float input.
	for i := 0.0; i < bestN && i < 50; i++ {
		v := (bestFirst + i) * step
		if math.Abs(v) < step*1e-9 {
			v = 0 // avoid labels like "-0" or "1e-17"
		}
		ticks = append(ticks, v)
	}
	return nlo, nhi, ticks, step
}

// plotFormatTick formats a tick value compactly, with just enough digits to
// tell ticks step apart: trimmed decimals normally, exponent form for very
// large or very small values.
func plotFormatTick(v, step float64) string {
	if v == 0 {
		return "0"
	}
	av := math.Abs(v)
	if av >= 1e7 || av < 1e-4 || !(step > 0) {
		// Significant digits: from the value's magnitude down to the step's.
		digits := 3
		if step > 0 {
			digits = int(math.Floor(math.Log10(av))-math.Floor(math.Log10(step)+1e-9)) + 1
		}
		digits = min(max(digits, 1), 17)
		s := strconv.FormatFloat(v, 'g', digits, 64)
		// "1.5e+07" -> "1.5e7", "2e-05" -> "2e-5": shorter, still clear.
		s = strings.Replace(s, "e+", "e", 1)
		s = strings.Replace(s, "e0", "e", 1)
		s = strings.Replace(s, "e-0", "e-", 1)
		return s
	}
	// Round to the step's decimals (hides float noise such as
	// 0.30000000000000004), then drop trailing zeros: "0.0015", "0.002".
	dec := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	s := strconv.FormatFloat(v, 'f', dec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// plotTextWidth is the width in pixels of s in plotFace.
func plotTextWidth(s string) int { return font.MeasureString(plotFace, s).Ceil() }

// plotColorOr returns c made opaque, or def if c is the zero value.
func plotColorOr(c, def color.RGBA) color.RGBA {
	if c == (color.RGBA{}) {
		return def
	}
	c.A = 255
	return c
}

// plotLegendName is the legend text of series i.
func plotLegendName(i int, s plotSeries) string {
	name := s.Name
	if name == "" {
		name = "series " + strconv.Itoa(i+1)
	}
	if len(name) > plotMaxNameChars {
		name = name[:plotMaxNameChars-3] + "..."
	}
	return name
}

// plotLayout computes ranges, ticks and margins. It is separate from
// drawing so that tests can find where a data point lands.
func plotLayout(c plotChart) plotFrame {
	f := plotFrame{width: c.Width, height: c.Height}
	if f.width <= 0 {
		f.width = plotDefaultWidth
	}
	if f.height <= 0 {
		f.height = plotDefaultHeight
	}

	// Data extent over finite points only.
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !plotFinite(p[0]) || !plotFinite(p[1]) {
				continue
			}
			xmin, xmax = min(xmin, p[0]), max(xmax, p[0])
			ymin, ymax = min(ymin, p[1]), max(ymax, p[1])
		}
	}
	if xmin > xmax { // no finite point at all
		xmin, xmax = 0, 1
	}
	// The x axis spans exactly the data, so lines start at the left edge.
	f.xlo, f.xhi = plotSaneRange(xmin, xmax)
	var xstep, ystep float64
	_, _, f.xticks, xstep = plotTicks(f.xlo, f.xhi, false)

	if c.YMin < c.YMax && plotFinite(c.YMax-c.YMin) {
		f.ylo, f.yhi = c.YMin, c.YMax
		_, _, f.yticks, ystep = plotTicks(f.ylo, f.yhi, false)
	} else {
		// Automatic: include the reference lines and 0, since throughput
		// and latency charts that do not start at 0 exaggerate changes.
		for _, h := range c.HLines {
			if plotFinite(h.Y) {
				ymin, ymax = min(ymin, h.Y), max(ymax, h.Y)
			}
		}
		ymin, ymax = min(ymin, 0), max(ymax, 0)
		if ymin == ymax {
			// Only zeros (or nothing): show 0 at the bottom, as usual.
			ymax = 1
		}
		f.ylo, f.yhi = plotSaneRange(ymin, ymax)
		f.ylo, f.yhi, f.yticks, ystep = plotTicks(f.ylo, f.yhi, true)
		f.ylo, f.yhi = plotSaneRange(f.ylo, f.yhi)
	}
	for _, v := range f.xticks {
		f.xlabels = append(f.xlabels, plotFormatTick(v, xstep))
	}
	for _, v := range f.yticks {
		f.ylabels = append(f.ylabels, plotFormatTick(v, ystep))
	}
	for i, s := range c.Series {
		f.legend = append(f.legend, plotLegendName(i, s))
	}

	// Margins, from the text that must fit around the plot area.
	const lineH = 13
	top := 12
	if c.Title != "" {
		top += lineH + 12
	}
	bottom := plotTickLen + 4 + lineH + 8
	if c.XLabel != "" {
		bottom += lineH + 6
	}
	ylabW := 0
	for _, l := range f.ylabels {
		ylabW = max(ylabW, plotTextWidth(l))
	}
	left := 10 + ylabW + 4 + plotTickLen
	if c.YLabel != "" {
		left += lineH + 8
	}
	right := 16
	if len(f.legend) > 0 {
		nameW := 0
		for _, n := range f.legend {
			nameW = max(nameW, plotTextWidth(n))
		}
		right = 14 + 22 + 6 + nameW + 10
	}
	if n := len(f.xlabels); n > 0 {
		// The last x label is centered on the right edge: keep it inside.
		right = max(right, plotTextWidth(f.xlabels[n-1])/2+4)
	}
	f.area = image.Rect(left, top, f.width-right, f.height-bottom)
	if f.area.Dx() < 10 || f.area.Dy() < 10 {
		// Too small for decorations: use (almost) the whole image so the
		// data is still visible; text is clipped at the image border.
		f.area = image.Rect(0, 0, f.width, f.height).Inset(1)
	}
	return f
}

// plotRender draws the chart into a new image.
func plotRender(c plotChart) *image.RGBA {
	f := plotLayout(c)
	img := image.NewRGBA(image.Rect(0, 0, f.width, f.height))
	draw.Draw(img, img.Bounds(), image.NewUniform(plotWhite), image.Point{}, draw.Src)
	a := f.area
	bounds := img.Bounds()

	// Grid first, so that everything else is drawn over it.
	for _, x := range f.xticks {
		px, _ := f.toPixel(x, f.ylo)
		plotVLine(img, a, int(math.Round(px)), a.Min.Y, a.Max.Y-1, plotGridColor)
	}
	for _, y := range f.yticks {
		_, py := f.toPixel(f.xlo, y)
		plotHLineAt(img, a, int(math.Round(py)), a.Min.X, a.Max.X-1, plotGridColor)
	}
	if f.ylo < 0 && f.yhi > 0 {
		// A darker y=0 line helps read signs when data goes negative.
		_, py := f.toPixel(f.xlo, 0)
		plotHLineAt(img, a, int(math.Round(py)), a.Min.X, a.Max.X-1, plotZeroColor)
	}

	// Axes sit just outside the plot area so data never hides them.
	plotVLine(img, bounds, a.Min.X-1, a.Min.Y, a.Max.Y, plotAxisColor)
	plotHLineAt(img, bounds, a.Max.Y, a.Min.X-1, a.Max.X-1, plotAxisColor)

	// Ticks and their labels.
	const ascent = 11
	for i, x := range f.xticks {
		px, _ := f.toPixel(x, f.ylo)
		xi := int(math.Round(px))
		plotVLine(img, bounds, xi, a.Max.Y+1, a.Max.Y+plotTickLen, plotAxisColor)
		l := f.xlabels[i]
		plotText(img, l, xi-plotTextWidth(l)/2, a.Max.Y+plotTickLen+4+ascent, plotTextColor)
	}
	for i, y := range f.yticks {
		_, py := f.toPixel(f.xlo, y)
		yi := int(math.Round(py))
		plotHLineAt(img, bounds, yi, a.Min.X-1-plotTickLen, a.Min.X-2, plotAxisColor)
		l := f.ylabels[i]
		plotText(img, l, a.Min.X-1-plotTickLen-4-plotTextWidth(l), yi+4, plotTextColor)
	}

	// Reference lines below the data (data stays readable where they
	// cross); their labels are drawn after the data, see below.
	type hlabel struct {
		y     int
		label string
		col   color.RGBA
	}
	var hlabels []hlabel
	for _, h := range c.HLines {
		if !plotFinite(h.Y) || h.Y < f.ylo || h.Y > f.yhi {
			continue
		}
		col := plotColorOr(h.Color, plotHLineRed)
		_, py := f.toPixel(f.xlo, h.Y)
		yi := int(math.Round(py))
		// 2 px thick: the second row goes above, or below when the line
		// is on the top edge, so that it is not clipped away.
		y2 := yi - 1
		if y2 < a.Min.Y {
			y2 = yi + 1
		}
		for x := a.Min.X; x < a.Max.X; x++ {
			if (x-a.Min.X)%plotDashPeriod < plotDashOn {
				plotSet(img, a, x, yi, col)
				plotSet(img, a, x, y2, col)
			}
		}
		if h.Label != "" {
			hlabels = append(hlabels, hlabel{yi, h.Label, col})
		}
	}

	// Series.
	for i, s := range c.Series {
		col := plotColorOr(s.Color, plotPalette[i%len(plotPalette)])
		n := 0
		for _, p := range s.Points {
			if plotFinite(p[0]) && plotFinite(p[1]) {
				n++
			}
		}
		havePrev := false
		var px0, py0 float64
		for _, p := range s.Points {
			if !plotFinite(p[0]) || !plotFinite(p[1]) {
				havePrev = false // a gap in the data is shown as a gap
				continue
			}
			px, py := f.toPixel(p[0], p[1])
			if havePrev {
				plotLine(img, a, px0, py0, px, py, col)
			}
			if n <= plotMaxMarkers {
				plotMarker(img, a, px, py, col)
			}
			px0, py0, havePrev = px, py, true
		}
	}

	// Reference line labels, right-aligned above their line (below it when
	// too close to the top), on a white box so lines under them do not
	// garble the text.
	for _, h := range hlabels {
		w := plotTextWidth(h.label)
		x := a.Max.X - 6 - w
		base := h.y - 5
		if base-ascent < a.Min.Y+2 {
			base = h.y + 4 + ascent
		}
		box := image.Rect(x-2, base-ascent-1, x+w+2, base+3).Intersect(a)
		draw.Draw(img, box, image.NewUniform(plotWhite), image.Point{}, draw.Src)
		plotText(img, h.label, x, base, h.col)
	}

	// Title (faux bold by drawing twice, 1 px apart), axis labels, legend.
	if c.Title != "" {
		w := plotTextWidth(c.Title) + 1
		x := max(4, (a.Min.X+a.Max.X)/2-w/2)
		plotText(img, c.Title, x, 12+ascent, plotTextColor)
		plotText(img, c.Title, x+1, 12+ascent, plotTextColor)
	}
	if c.XLabel != "" {
		w := plotTextWidth(c.XLabel)
		plotText(img, c.XLabel, (a.Min.X+a.Max.X)/2-w/2, a.Max.Y+plotTickLen+4+13+6+ascent, plotTextColor)
	}
	if c.YLabel != "" {
		plotTextVertical(img, c.YLabel, 10, (a.Min.Y+a.Max.Y)/2, plotTextColor)
	}
	lx := a.Max.X + 14
	for i, name := range f.legend {
		y := a.Min.Y + 2 + i*18
		if y+13 > f.height {
			break // more series than fit: the rest are left out
		}
		col := plotColorOr(c.Series[i].Color, plotPalette[i%len(plotPalette)])
		for x := lx; x < lx+22; x++ {
			plotSet(img, bounds, x, y+6, col)
			plotSet(img, bounds, x, y+7, col)
		}
		plotText(img, name, lx+28, y+ascent, plotTextColor)
	}
	return img
}

// plotSet sets one pixel if it lies inside clip.
func plotSet(img *image.RGBA, clip image.Rectangle, x, y int, c color.RGBA) {
	if (image.Point{x, y}).In(clip) {
		img.SetRGBA(x, y, c)
	}
}

// plotVLine draws a 1 px vertical line from (x, y0) to (x, y1) inclusive.
func plotVLine(img *image.RGBA, clip image.Rectangle, x, y0, y1 int, c color.RGBA) {
	for y := max(y0, clip.Min.Y); y <= min(y1, clip.Max.Y-1); y++ {
		plotSet(img, clip, x, y, c)
	}
}

// plotHLineAt draws a 1 px horizontal line from (x0, y) to (x1, y) inclusive.
func plotHLineAt(img *image.RGBA, clip image.Rectangle, y, x0, x1 int, c color.RGBA) {
	for x := max(x0, clip.Min.X); x <= min(x1, clip.Max.X-1); x++ {
		plotSet(img, clip, x, y, c)
	}
}

// plotMarker draws a 5x5 square centered on (px, py), clipped.
func plotMarker(img *image.RGBA, clip image.Rectangle, px, py float64, c color.RGBA) {
	if !plotFinite(px) || !plotFinite(py) {
		return
	}
	// Far-away points are outside anyway; checking first keeps the int
	// conversion below in range.
	r := image.Rect(clip.Min.X-3, clip.Min.Y-3, clip.Max.X+3, clip.Max.Y+3)
	if px < float64(r.Min.X) || px > float64(r.Max.X) || py < float64(r.Min.Y) || py > float64(r.Max.Y) {
		return
	}
	x, y := int(math.Round(px)), int(math.Round(py))
	for dy := -2; dy <= 2; dy++ {
		for dx := -2; dx <= 2; dx++ {
			plotSet(img, clip, x+dx, y+dy, c)
		}
	}
}

// plotLine draws a 2 px wide line between two fractional pixel positions,
// clipped to clip. The segment is clipped in floating point first
// (Liang-Barsky), which bounds the Bresenham loop by the clip size even for
// points far outside the image.
func plotLine(img *image.RGBA, clip image.Rectangle, x0, y0, x1, y1 float64, c color.RGBA) {
	if !plotFinite(x0) || !plotFinite(y0) || !plotFinite(x1) || !plotFinite(y1) {
		return
	}
	xmin, xmax := float64(clip.Min.X), float64(clip.Max.X-1)
	ymin, ymax := float64(clip.Min.Y), float64(clip.Max.Y-1)
	if xmin > xmax || ymin > ymax {
		return
	}
	dx, dy := x1-x0, y1-y0
	t0, t1 := 0.0, 1.0
	// Each (p, q) pair is one clip edge: the segment is inside where
	// p*t <= q.
	for _, e := range [4][2]float64{{-dx, x0 - xmin}, {dx, xmax - x0}, {-dy, y0 - ymin}, {dy, ymax - y0}} {
		p, q := e[0], e[1]
		if p == 0 {
			if q < 0 {
				return // parallel to this edge and outside it
			}
			continue
		}
		t := q / p
		if p < 0 {
			t0 = max(t0, t)
		} else {
			t1 = min(t1, t)
		}
		if t0 > t1 {
			return
		}
	}
	ix0, iy0 := int(math.Round(x0+t0*dx)), int(math.Round(y0+t0*dy))
	ix1, iy1 := int(math.Round(x0+t1*dx)), int(math.Round(y0+t1*dy))

	// Bresenham. The second pixel of the 2 px brush goes across the line's
	// major direction, so width is 2 px whatever the slope.
	adx, ady := ix1-ix0, -(iy1 - iy0)
	sx, sy := 1, 1
	if adx < 0 {
		adx, sx = -adx, -1
	}
	if ady > 0 {
		ady = -ady
	}
	if iy1 < iy0 {
		sy = -1
	}
	mostlyHorizontal := adx >= -ady
	err := adx + ady
	x, y := ix0, iy0
	for {
		plotSet(img, clip, x, y, c)
		if mostlyHorizontal {
			plotSet(img, clip, x, y+1, c)
		} else {
			plotSet(img, clip, x+1, y, c)
		}
		if x == ix1 && y == iy1 {
			return
		}
		e2 := 2 * err
		if e2 >= ady {
			err += ady
			x += sx
		}
		if e2 <= adx {
			err += adx
			y += sy
		}
	}
}

// plotText draws s with its left end at x and its baseline at y.
func plotText(img draw.Image, s string, x, baseline int, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: plotFace, Dot: fixed.P(x, baseline)}
	d.DrawString(s)
}

// plotTextVertical draws s rotated 90 degrees counter-clockwise (reading
// bottom to top, as y axis labels usually do), its glyph tops at column x
// and centered on row yCenter. The font has no rotated form, so the text is
// drawn into a mask and the mask copied transposed.
func plotTextVertical(img *image.RGBA, s string, x, yCenter int, c color.RGBA) {
	w, h := plotTextWidth(s), 13
	if w <= 0 {
		return
	}
	mask := image.NewAlpha(image.Rect(0, 0, w, h))
	d := font.Drawer{Dst: mask, Src: image.Opaque, Face: plotFace, Dot: fixed.P(0, 11)}
	d.DrawString(s)
	bottom := yCenter + w/2
	for ty := 0; ty < h; ty++ {
		for tx := 0; tx < w; tx++ {
			if mask.AlphaAt(tx, ty).A >= 128 {
				plotSet(img, img.Bounds(), x+ty, bottom-tx, c)
			}
		}
	}
}
