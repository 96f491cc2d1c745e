import Foundation
import ICHIngest
import ICHPhantom
import ICHTestSupport
import Testing

/// Which JPEGs are slices: greyscale, equal-channel RGB and three-window RGB are; colour (real chroma) is not.
/// Every file is written through libjpeg-turbo (`JPEGCodec.encode`), at ichd's own 4:4:4 and at the 4:2:0 that
/// most other tools write.
@Suite struct ColourJPEGTests {
    let dir = TemporaryDirectory()

    /// The research project's windows (level, width): brain, subdural, bone, as 8-bit channels.
    static let windows: [(level: Float, width: Float)] = [(40, 80), (80, 200), (600, 2800)]

    static func windowed(_ hu: HounsfieldImage, _ windows: [(level: Float, width: Float)]) -> Image8 {
        var pixels = [UInt8]()
        pixels.reserveCapacity(hu.pixels.count * windows.count)
        for v in hu.pixels {
            for w in windows { pixels.append(UInt8((min(max((v - w.level + w.width / 2) / w.width, 0), 1) * 255).rounded())) }
        }
        return Image8(width: hu.width, height: hu.height, channels: windows.count, pixels: pixels)
    }

    /// A grey image as RGB with `paint` deciding the colour of some pixels (an annotation, an overlay).
    static func painted(_ grey: Image8, _ paint: (Int, Int, UInt8) -> (UInt8, UInt8, UInt8)?) -> Image8 {
        var pixels = [UInt8]()
        for y in 0..<grey.height {
            for x in 0..<grey.width {
                let g = grey.pixels[(y * grey.width + x) * grey.channels]
                let (r, gg, b) = paint(x, y, g) ?? (g, g, g)
                pixels += [r, gg, b]
            }
        }
        return Image8(width: grey.width, height: grey.height, channels: 3, pixels: pixels)
    }

    static let slice = Fixtures.head(size: 256, bleed: true)
    static let brainOnly = windowed(slice, [windows[0]])

    func open(_ image: Image8, quality: Int = 92, chroma: JPEGCodec.ChromaSampling = .full) throws -> Result<Image8, IngestRejection> {
        let path = dir.file("slice-\(UUID().uuidString).jpg")
        try Data(try JPEGCodec.encode(image, quality: quality, chroma: chroma)).write(to: URL(fileURLWithPath: path))
        do {
            guard case .jpeg(let decoded) = try SliceFile.open(path: path) else {
                Issue.record("a JPEG opened as DICOM")
                return .failure(.notDicom("opened as DICOM"))
            }
            return .success(decoded)
        } catch {
            return .failure(error)
        }
    }

    @Test func greyscaleJPEGIsASlice() throws {
        let opened = try open(Self.brainOnly)
        #expect((try? opened.get())?.channels == 1)
    }

    @Test(arguments: [JPEGCodec.ChromaSampling.full, .half])
    func equalChannelRGBIsASlice(_ chroma: JPEGCodec.ChromaSampling) throws {
        let rgb = Self.windowed(Self.slice, [Self.windows[0], Self.windows[0], Self.windows[0]])
        let decoded = try open(rgb, chroma: chroma).get()
        #expect(decoded.channels == 3)
        #expect(ChannelAgreement(decoded)!.discordantPairs == 0)
    }

    /// Every slice of a positive and a negative phantom series as a three-window JPEG, at the qualities and
    /// samplings the research project's tools may have used; the slices differ channel by channel, yet pass.
    @Test(arguments: [(92, JPEGCodec.ChromaSampling.full), (75, .half), (50, .half)])
    func threeWindowJPEGsAreSlices(_ quality: Int, _ chroma: JPEGCodec.ChromaSampling) throws {
        for (seed, positive) in [(900001 as UInt64, true), (900002, false)] {
            for slice in PhantomSeries(seed: seed, positive: positive, size: 256).slices() {
                let image = Self.windowed(slice.image, Self.windows)
                switch try open(image, quality: quality, chroma: chroma) {
                case .success(let decoded): #expect(decoded.channels == 3)
                case .failure(let why): Issue.record("seed \(seed) slice \(slice.identity.instanceNumber): \(why)")
                }
            }
        }
    }

    /// Colour the slice reader must refuse: what a photo, a screenshot or an annotated export looks like.
    static let colourImages: [(String, Image8)] = {
        var rainbow = [UInt8]()
        for y in 0..<128 {
            for x in 0..<128 {
                let h = Double(x) / 128 * 6, v = Double(255 - y), f = v * (1 - abs(h.truncatingRemainder(dividingBy: 2) - 1))
                let rgb: (Double, Double, Double) = h < 1 ? (v, f, 0) : h < 2 ? (f, v, 0) : h < 3 ? (0, v, f)
                    : h < 4 ? (0, f, v) : h < 5 ? (f, 0, v) : (v, 0, f)
                rainbow += [UInt8(rgb.0), UInt8(rgb.1), UInt8(rgb.2)]
            }
        }
        // Photo-like: each channel its own smooth pattern (fixed, so the test is exact).
        var photo = [UInt8]()
        for y in 0..<128 {
            for x in 0..<128 {
                for c in 0..<3 {
                    let fx = 0.03 + 0.02 * Double(c), fy = 0.05 - 0.015 * Double(c)
                    photo.append(UInt8(128 + 100 * sin(fx * Double(x) + fy * Double(y) + 2 * Double(c))))
                }
            }
        }
        let grey = brainOnly
        let side = Int((Double(grey.width * grey.height) * 0.01).squareRoot())
        return [
            ("rainbow", Image8(width: 128, height: 128, channels: 3, pixels: rainbow)),
            ("photo-like", Image8(width: 128, height: 128, channels: 3, pixels: photo)),
            ("red box over 1% of a grey slice", painted(grey) { x, y, _ in
                (10..<(10 + side)).contains(x) && (10..<(10 + side)).contains(y) ? (255, 40, 40) : nil }),
            ("green text lines on a grey slice", painted(grey) { x, y, _ in y % 40 < 3 && x % 7 < 4 ? (40, 255, 40) : nil }),
            ("heat-map overlay", painted(grey) { x, y, g in
                let d = Double((x - 150) * (x - 150) + (y - 110) * (y - 110)) / (2 * 40 * 40)
                let v = exp(-d)
                guard v > 0.2 else { return nil }
                let heat = (min(1, max(0, 1.5 - abs(4 * v - 3))), min(1, max(0, 1.5 - abs(4 * v - 2))), min(1, max(0, 1.5 - abs(4 * v - 1))))
                func mix(_ h: Double) -> UInt8 { UInt8((Double(g) * 0.55 + h * 255 * 0.45).rounded()) }
                return (mix(heat.0), mix(heat.1), mix(heat.2))
            }),
            ("one inverted channel", painted(grey) { _, _, g in (g, 255 - g, g) }),
        ]
    }()

    @Test(arguments: [JPEGCodec.ChromaSampling.full, .half])
    func colourJPEGsAreRefusedWithTheReason(_ chroma: JPEGCodec.ChromaSampling) throws {
        for (name, image) in Self.colourImages {
            switch try open(image, chroma: chroma) {
            case .success: Issue.record("\(name) was taken as a slice")
            case .failure(let why):
                #expect(why.code == "colour_jpeg", "\(name): \(why)")
                #expect(why.message.contains("% of pixel pairs oppositely"), "\(name): \(why.message)")
            }
        }
    }

    /// The documented limit: a tinted greyscale image (sepia) has channels that are one monotone function of
    /// brightness, as window channels are, so it is not told apart here.
    @Test func tintedGreyscaleIsNotColour() throws {
        let sepia = Self.painted(Self.brainOnly) { _, _, g in (g, UInt8(Double(g) * 0.8), UInt8(Double(g) * 0.55)) }
        #expect((try? open(sepia).get()) != nil)
    }

    /// The codec itself decodes colour (ichd's previews and overlays are colour); only the slice reader refuses it.
    @Test func codecStillDecodesColour() throws {
        let image = Self.colourImages[0].1
        #expect(try JPEGCodec.decode(try JPEGCodec.encode(image)).channels == 3)
    }

    @Test func discordanceCountsPairsOrderedOppositely() {
        // Pixels 0 and 1 ordered oppositely by red and green by 250 levels; pixel 2 is ordered the same way as
        // each of them by both channels (ties included).
        let image = Image8(width: 3, height: 1, channels: 3, pixels: [0, 250, 0, 250, 0, 0, 250, 250, 0])
        let agreement = ChannelAgreement(image, tolerance: 100)!
        #expect(agreement.discordantPairs == 1.0 / 3.0)
        #expect(agreement.channelNames == "red and green")
        // With a tolerance above the disagreement nothing counts.
        #expect(ChannelAgreement(image, tolerance: 250)!.discordantPairs == 1.0 / 3.0)
        #expect(ChannelAgreement(image, tolerance: 251)!.discordantPairs == 0)
        #expect(ChannelAgreement(Image8(width: 1, height: 1, channels: 1, pixels: [9])) == nil)
    }
}
