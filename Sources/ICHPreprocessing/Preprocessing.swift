/// One display window of Hounsfield units mapped to [0, 1]: level - width/2 -> 0, level + width/2 -> 1,
/// clamped outside. (Kaggle writes windows as (level, width); fastai's tuples are (width, level).)
public struct Window: Codable, Sendable, Equatable {
    public var name: String
    public var level: Float
    public var width: Float

    public init(name: String, level: Float, width: Float) {
        precondition(width > 0, "window width must be positive")
        self.name = name
        self.level = level
        self.width = width
    }

    public var lower: Float { level - width / 2 }
    public var upper: Float { level + width / 2 }

    @inline(__always)
    public func value(_ hu: Float) -> Float {
        min(max((hu - lower) / width, 0), 1)
    }

    /// Strictly inside the window: what "brain coverage" counts (as the fastai notebook's pct_in_window did).
    @inline(__always)
    public func contains(_ hu: Float) -> Bool { hu > lower && hu < upper }

    public static let brain = Window(name: "brain", level: 40, width: 80)
    public static let subdural = Window(name: "subdural", level: 80, width: 200)
    public static let bone = Window(name: "bone", level: 600, width: 2800)
}

/// How the head is found and cropped: the mask window's values, with everything at the window's top (bone,
/// contrast) set to 0, are block-averaged to at most `analysisSize` pixels a side, blurred with a Gaussian of
/// `blurSigma` x that side, and thresholded; the bounding box of what remains is the head. Blurring drops thin
/// structures (the table, headrest, tubes) that would stretch the box.
public struct HeadCrop: Codable, Sendable, Equatable {
    public var maskWindow: Window = .brain
    public var blurSigma: Double = 0.02
    public var threshold: Double = 0.1
    public var analysisSize: Int = 128

    public init(maskWindow: Window = .brain, blurSigma: Double = 0.02, threshold: Double = 0.1, analysisSize: Int = 128) {
        self.maskWindow = maskWindow
        self.blurSigma = blurSigma
        self.threshold = threshold
        self.analysisSize = analysisSize
    }

    enum CodingKeys: String, CodingKey {
        case maskWindow = "mask_window", blurSigma = "blur_sigma", threshold, analysisSize = "analysis_size"
    }
}

/// What 8-bit JPEG slices hold: the research project saved its preprocessed slices as RGB JPEGs whose
/// channels are the windows in order; a grey JPEG is one window, repeated on every channel.
public enum JPEGChannelLayout: String, Codable, Sendable {
    case windows
}

/// The one description of the model's input, carried in the model file and shared by the converter,
/// the scorer and the daemon, so that training and inference cannot drift apart.
public struct Preprocessing: Codable, Sendable, Equatable {
    /// One output channel per window, in order.
    public var windows: [Window]
    /// Side of the square model input.
    public var outputSize: Int
    /// nil: no crop, the whole slice padded to square.
    public var headCrop: HeadCrop?
    /// Per-channel normalisation applied last: (value - mean) / std.
    public var mean: [Float]
    public var std: [Float]
    /// Slices whose fraction of pixels strictly inside `coverageWindow` is below this are skipped, not scored.
    public var minBrainCoverage: Double
    public var coverageWindow: Window
    public var jpegChannels: JPEGChannelLayout

    public init(windows: [Window] = [.brain, .subdural, .bone], outputSize: Int = 256, headCrop: HeadCrop? = HeadCrop(),
                mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225],
                minBrainCoverage: Double = Preprocessing.defaultMinBrainCoverage, coverageWindow: Window = .brain,
                jpegChannels: JPEGChannelLayout = .windows) {
        self.windows = windows
        self.outputSize = outputSize
        self.headCrop = headCrop
        self.mean = mean
        self.std = std
        self.minBrainCoverage = minBrainCoverage
        self.coverageWindow = coverageWindow
        self.jpegChannels = jpegChannels
    }

    /// The fastai notebook the research project followed dropped slices under 2% brain; the project's text
    /// says 20%, which would drop the top and bottom slices of the head where small bleeds also occur.
    /// 2% drops no bleed slice of ichd's phantoms (lowest bleed coverage 2.3%; docs/preprocessing.md).
    public static let defaultMinBrainCoverage = 0.02

    /// The RSNA 2019 recipe: brain L40/W80, subdural L80/W200, bone L600/W2800, head crop, 256x256, ImageNet stats.
    public static let rsna = Preprocessing()

    public var channels: Int { windows.count }

    /// Why a description cannot be used (a model file carrying it is refused), or nil.
    public var problem: String? {
        if windows.isEmpty { return "no windows" }
        if windows.contains(where: { !($0.width > 0) || !$0.level.isFinite }) { return "a window with non-positive width" }
        if mean.count != windows.count || std.count != windows.count { return "mean/std count differs from the window count" }
        if std.contains(where: { !($0 > 0) }) { return "a non-positive std" }
        if !(8...2048).contains(outputSize) { return "output size \(outputSize) outside 8...2048" }
        if !(0...1).contains(minBrainCoverage) { return "brain coverage threshold outside [0, 1]" }
        if let crop = headCrop, !(crop.analysisSize >= 8 && crop.blurSigma >= 0 && crop.threshold >= 0 && crop.threshold < 1) {
            return "head crop parameters out of range"
        }
        return nil
    }

    enum CodingKeys: String, CodingKey {
        case windows, outputSize = "output_size", headCrop = "head_crop", mean, std
        case minBrainCoverage = "min_brain_coverage", coverageWindow = "coverage_window", jpegChannels = "jpeg_channels"
    }
}
