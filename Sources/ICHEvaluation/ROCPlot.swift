import ICHIngest

/// ROC curves of an evaluation drawn as an RGB raster (`ichd eval --plot ROC.png`): one curve per class with
/// its AUC in the legend, the chance diagonal, and each class's operating point (the model's threshold) as a
/// square marker, so an engineer sees at a glance where the appliance sits on each curve.
public enum ROCPlot {
    static let palette: [(UInt8, UInt8, UInt8)] = [
        (0, 0, 0), (213, 94, 0), (0, 114, 178), (0, 158, 115), (204, 121, 167), (230, 159, 0),
        (86, 180, 233), (120, 120, 120),
    ]

    public static func render(_ report: EvaluationReport, title: String) -> Image8 {
        var canvas = Raster(width: 760, height: 560)
        let left = 70, top = 50, side = 440
        func point(_ fpr: Double, _ tpr: Double) -> (Int, Int) {
            (left + Int((fpr * Double(side)).rounded()), top + side - Int((tpr * Double(side)).rounded()))
        }
        canvas.text(String(title.prefix(60)), x: left, y: 16, scale: 2, colour: (0, 0, 0))
        // Grid, ticks and axes.
        for i in 0...5 {
            let v = Double(i) / 5
            let (x, _) = point(v, 0), (_, y) = point(0, v)
            canvas.line(from: (x, top), to: (x, top + side), colour: (225, 225, 225))
            canvas.line(from: (left, y), to: (left + side, y), colour: (225, 225, 225))
            let label = i == 0 ? "0" : i == 5 ? "1" : "0.\(2 * i)"
            canvas.text(label, x: x - 3 * label.count, y: top + side + 8, scale: 1, colour: (0, 0, 0))
            canvas.text(label, x: left - 8 - 6 * label.count, y: y - 3, scale: 1, colour: (0, 0, 0))
        }
        canvas.line(from: point(0, 0), to: point(1, 1), colour: (170, 170, 170))
        canvas.rectangle(x: left, y: top, width: side + 1, height: side + 1, colour: (0, 0, 0))
        canvas.text("1 - SPECIFICITY (FALSE-POSITIVE RATE)", x: left + 100, y: top + side + 24, scale: 1, colour: (0, 0, 0))
        canvas.text("SENSITIVITY", x: 8, y: top - 14, scale: 1, colour: (0, 0, 0))

        var legendY = top + 4
        for (c, figures) in report.classes.enumerated() {
            let colour = palette[c % palette.count]
            if let roc = figures.roc, roc.count >= 2 {
                for k in 1..<roc.count {
                    canvas.line(from: point(roc[k - 1][0], roc[k - 1][1]), to: point(roc[k][0], roc[k][1]), colour: colour, thickness: 2)
                }
                if let sens = figures.atThreshold.sensitivity, let spec = figures.atThreshold.specificity {
                    let (x, y) = point(1 - spec, sens)
                    canvas.fill(x: x - 4, y: y - 4, width: 9, height: 9, colour: colour)
                }
            }
            canvas.fill(x: left + side + 24, y: legendY, width: 18, height: 4, colour: colour)
            let auc = figures.auc.map { "AUC " + fixed($0, digits: 3) } ?? "NO AUC (ONE CLASS ONLY)"
            canvas.text(figures.name, x: left + side + 48, y: legendY - 2, scale: 1, colour: (0, 0, 0))
            canvas.text(auc + "  @" + fixed(figures.threshold, digits: 2), x: left + side + 48, y: legendY + 9, scale: 1, colour: (90, 90, 90))
            legendY += 30
        }
        canvas.fill(x: left + side + 28, y: legendY + 2, width: 9, height: 9, colour: (0, 0, 0))
        canvas.text("OPERATING POINT", x: left + side + 48, y: legendY + 3, scale: 1, colour: (0, 0, 0))
        canvas.text("(THE MODEL'S THRESHOLD)", x: left + side + 48, y: legendY + 14, scale: 1, colour: (90, 90, 90))
        canvas.text("SLICES: \(report.slicesLabelled)", x: left + side + 24, y: legendY + 40, scale: 1, colour: (0, 0, 0))
        return canvas.image
    }

    /// "0.957": fixed decimals without Foundation's formatter (this module's output must not depend on locale).
    static func fixed(_ value: Double, digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let n = Int((value * scale).rounded())
        let whole = n / Int(scale), fraction = String(n % Int(scale))
        return "\(whole)." + String(repeating: "0", count: digits - fraction.count) + fraction
    }
}

/// An RGB drawing surface with the few primitives plots need.
struct Raster {
    let width: Int, height: Int
    var pixels: [UInt8]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 255, count: width * height * 3)
    }

    var image: Image8 { Image8(width: width, height: height, channels: 3, pixels: pixels) }

    mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.0
        pixels[i + 1] = c.1
        pixels[i + 2] = c.2
    }

    mutating func fill(x: Int, y: Int, width w: Int, height h: Int, colour: (UInt8, UInt8, UInt8)) {
        for yy in y..<(y + h) { for xx in x..<(x + w) { set(xx, yy, colour) } }
    }

    mutating func rectangle(x: Int, y: Int, width w: Int, height h: Int, colour: (UInt8, UInt8, UInt8)) {
        line(from: (x, y), to: (x + w - 1, y), colour: colour)
        line(from: (x, y + h - 1), to: (x + w - 1, y + h - 1), colour: colour)
        line(from: (x, y), to: (x, y + h - 1), colour: colour)
        line(from: (x + w - 1, y), to: (x + w - 1, y + h - 1), colour: colour)
    }

    /// Bresenham, with a square pen of `thickness` pixels.
    mutating func line(from a: (Int, Int), to b: (Int, Int), colour: (UInt8, UInt8, UInt8), thickness: Int = 1) {
        var (x, y) = a
        let dx = abs(b.0 - x), dy = -abs(b.1 - y), sx = x < b.0 ? 1 : -1, sy = y < b.1 ? 1 : -1
        var error = dx + dy
        while true {
            fill(x: x - thickness / 2, y: y - thickness / 2, width: thickness, height: thickness, colour: colour)
            if x == b.0 && y == b.1 { break }
            let e2 = 2 * error
            if e2 >= dy { error += dy; x += sx }
            if e2 <= dx { error += dx; y += sy }
        }
    }

    /// Upper-case text in the 5x7 font below (lower case is drawn as upper case; unknown characters as blanks).
    mutating func text(_ string: String, x: Int, y: Int, scale: Int, colour: (UInt8, UInt8, UInt8)) {
        var cx = x
        for character in string.uppercased() {
            if let glyph = BitmapFont.glyphs[character] {
                for (row, bits) in glyph.enumerated() {
                    for (column, bit) in bits.enumerated() where bit == "#" {
                        fill(x: cx + column * scale, y: y + row * scale, width: scale, height: scale, colour: colour)
                    }
                }
            }
            cx += 6 * scale
        }
    }
}

/// A 5x7 pixel font, drawn for this file: upper case, digits and the punctuation the plots use.
enum BitmapFont {
    static let glyphs: [Character: [Substring]] = {
        let art: [(Character, String)] = [
            ("A", ".###. #...# #...# ##### #...# #...# #...#"), ("B", "####. #...# #...# ####. #...# #...# ####."),
            ("C", ".###. #...# #.... #.... #.... #...# .###."), ("D", "####. #...# #...# #...# #...# #...# ####."),
            ("E", "##### #.... #.... ####. #.... #.... #####"), ("F", "##### #.... #.... ####. #.... #.... #...."),
            ("G", ".###. #...# #.... #.### #...# #...# .####"), ("H", "#...# #...# #...# ##### #...# #...# #...#"),
            ("I", ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###."), ("J", "..### ...#. ...#. ...#. ...#. #..#. .##.."),
            ("K", "#...# #..#. #.#.. ##... #.#.. #..#. #...#"), ("L", "#.... #.... #.... #.... #.... #.... #####"),
            ("M", "#...# ##.## #.#.# #.#.# #...# #...# #...#"), ("N", "#...# #...# ##..# #.#.# #..## #...# #...#"),
            ("O", ".###. #...# #...# #...# #...# #...# .###."), ("P", "####. #...# #...# ####. #.... #.... #...."),
            ("Q", ".###. #...# #...# #...# #.#.# #..#. .##.#"), ("R", "####. #...# #...# ####. #.#.. #..#. #...#"),
            ("S", ".#### #.... #.... .###. ....# ....# ####."), ("T", "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
            ("U", "#...# #...# #...# #...# #...# #...# .###."), ("V", "#...# #...# #...# #...# #...# .#.#. ..#.."),
            ("W", "#...# #...# #...# #.#.# #.#.# #.#.# .#.#."), ("X", "#...# #...# .#.#. ..#.. .#.#. #...# #...#"),
            ("Y", "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.."), ("Z", "##### ....# ...#. ..#.. .#... #.... #####"),
            ("0", ".###. #...# #..## #.#.# ##..# #...# .###."), ("1", "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."),
            ("2", ".###. #...# ....# ...#. ..#.. .#... #####"), ("3", "##### ...#. ..#.. ...#. ....# #...# .###."),
            ("4", "...#. ..##. .#.#. #..#. ##### ...#. ...#."), ("5", "##### #.... ####. ....# ....# #...# .###."),
            ("6", "..##. .#... #.... ####. #...# #...# .###."), ("7", "##### ....# ...#. ..#.. .#... .#... .#..."),
            ("8", ".###. #...# #...# .###. #...# #...# .###."), ("9", ".###. #...# #...# .#### ....# ...#. .##.."),
            (".", "..... ..... ..... ..... ..... .##.. .##.."), (",", "..... ..... ..... ..... .##.. ..#.. .#..."),
            ("-", "..... ..... ..... ##### ..... ..... ....."), ("=", "..... ..... ##### ..... ##### ..... ....."),
            ("(", "...#. ..#.. .#... .#... .#... ..#.. ...#."), (")", ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."),
            (":", "..... .##.. .##.. ..... .##.. .##.. ....."), ("/", "..... ....# ...#. ..#.. .#... #.... ....."),
            ("@", ".###. #...# #.### #.#.# #.### #.... .####"), ("'", "..#.. ..#.. .#... ..... ..... ..... ....."),
            ("_", "..... ..... ..... ..... ..... ..... #####"), ("%", "##..# ##.#. ...#. ..#.. .#... .#.## #..##"),
            (" ", "..... ..... ..... ..... ..... ..... ....."),
        ]
        return Dictionary(uniqueKeysWithValues: art.map { ($0.0, $0.1.split(separator: " ")) })
    }()
}
