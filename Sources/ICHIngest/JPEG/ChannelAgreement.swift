/// Whether an RGB image's three channels could be windows of one greyscale image, or carry real colour.
///
/// A slice in the research project's format has the brain, subdural and bone windows of the same Hounsfield
/// units in its red, green and blue channels: the channels differ (the pixel is reddish where brain is mid-grey
/// and bone dark), yet each is a non-decreasing function of one value, so any two pixels are ordered the same
/// way by every channel. Grey and equal-channel RGB are the trivial case. A photo, a screenshot or a colour
/// overlay has pixels that one channel orders one way and another the other way (red brighter, green darker).
///
/// The measure is Kendall's discordance with a tolerance: the fraction of pixel pairs that two channels order
/// oppositely, each by at least `tolerance` levels (JPEG noise and chroma subsampling move a window slice's
/// channels by a few levels near edges), taken for the worst of the three channel pairs. It is counted from a
/// 256 x 256 joint histogram per pair, so the cost is one pass over the pixels plus 3 x 65536 steps.
public struct ChannelAgreement: Sendable, Equatable {
    /// Fraction of all pixel pairs, 0...1, ordered oppositely by the worst channel pair.
    public let discordantPairs: Double
    /// The channel pair that gave `discordantPairs`, 0 = red, 1 = green, 2 = blue.
    public let channels: (Int, Int)

    public static func == (a: Self, b: Self) -> Bool {
        a.discordantPairs == b.discordantPairs && a.channels == b.channels
    }

    /// Levels (1...255) by which both channels of a pair must disagree before a pair of pixels counts as
    /// discordant.
    public static let defaultTolerance = 48
    /// Most discordant pairs (at the default tolerance) a slice may have. Measured (docs/ingest.md) on the
    /// phantom series' slices as three-window JPEGs, full size and as ichd's 256-pixel previews, quality 50 to 92,
    /// 4:4:4 and 4:2:0: at most 0.011%; a red box over 1% of a grey slice 0.47%, green text lines 0.33%, an
    /// activation-map overlay 3.4%, photo-like and rainbow images 24% and 33%.
    public static let maxDiscordantPairs = 0.001

    /// Whether the channels agree closely enough to be windows of one greyscale image.
    public var isGreyscaleOrWindows: Bool { discordantPairs <= Self.maxDiscordantPairs }

    /// "red and green" for messages.
    public var channelNames: String {
        let names = ["red", "green", "blue"]
        return "\(names[channels.0]) and \(names[channels.1])"
    }

    /// nil for one-channel images (nothing to disagree).
    public init?(_ image: Image8, tolerance: Int = ChannelAgreement.defaultTolerance) {
        guard image.channels == 3, image.width * image.height > 0 else { return nil }
        precondition((1...255).contains(tolerance), "tolerance \(tolerance) outside 1...255")
        var worst = (pairs: -1.0, channels: (0, 1))
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            let pairs = Self.discordance(image, a, b, tolerance: tolerance)
            if pairs > worst.pairs { worst = (pairs, (a, b)) }
        }
        discordantPairs = worst.pairs
        channels = worst.channels
    }

    /// Pairs (p, q) with A(q) >= A(p) + t and B(q) <= B(p) - t, as a fraction of the N(N-1)/2 unordered pairs.
    static func discordance(_ image: Image8, _ a: Int, _ b: Int, tolerance t: Int) -> Double {
        var histogram = [Int](repeating: 0, count: 256 * 256)
        image.pixels.withUnsafeBufferPointer { p in
            var i = 0
            while i < p.count {
                histogram[Int(p[i + a]) << 8 | Int(p[i + b])] += 1
                i += 3
            }
        }
        // above[x][y] = pixels with A >= x and B <= y (row 256 and below: none).
        var above = [Int](repeating: 0, count: 257 * 256)
        for x in stride(from: 255, through: 0, by: -1) {
            var column = 0
            for y in 0..<256 {
                column += histogram[x << 8 | y]
                above[x * 256 + y] = above[(x + 1) * 256 + y] + column
            }
        }
        let n = image.width * image.height
        var discordant = 0
        for x in 0..<(256 - t) {
            for y in t..<256 {
                let count = histogram[x << 8 | y]
                if count > 0 { discordant += count * above[(x + t) * 256 + y - t] }
            }
        }
        return n > 1 ? Double(discordant) / (Double(n) * Double(n - 1) / 2) : 0
    }
}
