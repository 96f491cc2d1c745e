import Foundation
import ICHIngest

/// The square region of the source slice (pixel coordinates, may reach past the image edges, where it reads
/// as 0 in every window) that became the model input. Heatmaps map back to the slice through it.
public struct CropBox: Sendable, Equatable, Codable {
    public var x: Int
    public var y: Int
    public var side: Int

    public init(x: Int, y: Int, side: Int) {
        self.x = x
        self.y = y
        self.side = side
    }
}

/// The model's input for one slice.
public struct ModelInput: Sendable {
    public let size: Int
    public let channels: Int
    /// Normalised, channel-major (NCHW with N = 1): what the engine consumes.
    public var tensor: [Float]
    public let crop: CropBox
    /// Fraction of the source slice's pixels strictly inside the coverage window.
    public let brainCoverage: Double

    public init(size: Int, channels: Int, tensor: [Float], crop: CropBox, brainCoverage: Double) {
        precondition(tensor.count == channels * size * size)
        self.size = size
        self.channels = channels
        self.tensor = tensor
        self.crop = crop
        self.brainCoverage = brainCoverage
    }
}

/// Whether a slice is worth scoring.
public enum SliceAssessment: Sendable, Equatable {
    case score(brainCoverage: Double)
    /// Too little brain to say anything (above the vertex, below the skull base): skipped, not negative.
    case skip(brainCoverage: Double, threshold: Double)

    public var brainCoverage: Double {
        switch self {
        case .score(let c), .skip(let c, _): c
        }
    }

    public var reason: String? {
        guard case .skip(let c, let t) = self else { return nil }
        return "brain coverage \(Self.percent(c)) below the model's \(Self.percent(t)) threshold"
    }

    static func percent(_ x: Double) -> String {
        let tenths = (x * 1000).rounded() / 10
        return "\(tenths)%"
    }
}

/// Turns a slice into exactly the tensor the model was trained on, as `Preprocessing` describes it:
/// windows as channels, head crop padded to square, resized to the output size, normalised.
public struct SlicePreprocessor: Sendable {
    public let spec: Preprocessing

    public init(_ spec: Preprocessing) {
        precondition(spec.problem == nil, "invalid preprocessing: \(spec.problem!)")
        self.spec = spec
    }

    // MARK: Hounsfield slices (DICOM)

    public func brainCoverage(_ image: HounsfieldImage) -> Double {
        let window = spec.coverageWindow
        var inside = 0
        for v in image.pixels where window.contains(v) { inside += 1 }
        return image.pixels.isEmpty ? 0 : Double(inside) / Double(image.pixels.count)
    }

    public func assess(_ image: HounsfieldImage) -> SliceAssessment {
        decide(brainCoverage(image))
    }

    /// `assessment`: this image's, when already made (its brain coverage is not counted again).
    public func prepare(_ image: HounsfieldImage, assessment: SliceAssessment? = nil) -> ModelInput {
        let crop = headCropBox(width: image.width, height: image.height) { x, y in
            maskValue(image.pixels[y * image.width + x])
        }
        let windows = spec.windows
        let coverage = assessment?.brainCoverage ?? brainCoverage(image)
        return resample(width: image.width, height: image.height, crop: crop, coverage: coverage) { row, x0, x1, out in
            for (c, window) in windows.enumerated() {
                for x in x0..<x1 { out[c][x - x0] = window.value(image.pixels[row + x]) }
            }
        }
    }

    // MARK: 8-bit slices (JPEG, already windowed)

    /// In a windowed JPEG, "inside the window" is a channel value clear of both ends; compression noise moves
    /// black air by a few levels, hence the margin of 3.
    public func brainCoverage(_ image: Image8) -> Double {
        var inside = 0
        let n = image.width * image.height
        for i in 0..<n where (3...252).contains(image.pixels[i * image.channels]) { inside += 1 }
        return n == 0 ? 0 : Double(inside) / Double(n)
    }

    public func assess(_ image: Image8) -> SliceAssessment {
        decide(brainCoverage(image))
    }

    /// `assessment`: this image's, when already made (its brain coverage is not counted again).
    public func prepare(_ image: Image8, assessment: SliceAssessment? = nil) -> ModelInput {
        let stride = image.channels
        let crop = headCropBox(width: image.width, height: image.height) { x, y in
            let v = Float(image.pixels[(y * image.width + x) * stride]) / 255
            return v >= 1 ? 0 : v
        }
        let channels = spec.channels
        let coverage = assessment?.brainCoverage ?? brainCoverage(image)
        return resample(width: image.width, height: image.height, crop: crop, coverage: coverage) { row, x0, x1, out in
            for c in 0..<channels {
                let source = min(c, stride - 1)
                for x in x0..<x1 { out[c][x - x0] = Float(image.pixels[(row + x) * stride + source]) / 255 }
            }
        }
    }

    // MARK: Shared steps

    private func decide(_ coverage: Double) -> SliceAssessment {
        coverage < spec.minBrainCoverage ? .skip(brainCoverage: coverage, threshold: spec.minBrainCoverage) : .score(brainCoverage: coverage)
    }

    /// The mask window's value with its top (bone) removed, as the fastai notebook's mask_from_blur did.
    @inline(__always)
    private func maskValue(_ hu: Float) -> Float {
        guard let window = spec.headCrop?.maskWindow else { return 0 }
        let v = window.value(hu)
        return v >= 1 ? 0 : v
    }

    /// Bounding box of the blurred, thresholded head mask, padded to a square about its centre.
    /// Without a crop spec, or when nothing passes the threshold, the whole slice padded to square.
    func headCropBox(width: Int, height: Int, value: (Int, Int) -> Float) -> CropBox {
        let whole = Self.square(x0: 0, y0: 0, x1: width, y1: height)
        guard let crop = spec.headCrop else { return whole }
        // Block-average to at most analysisSize a side.
        let factor = max(1, (max(width, height) + crop.analysisSize - 1) / crop.analysisSize)
        let w = (width + factor - 1) / factor, h = (height + factor - 1) / factor
        var small = [Float](repeating: 0, count: w * h)
        for y in 0..<height {
            let sy = y / factor
            for x in 0..<width { small[sy * w + x / factor] += value(x, y) }
        }
        for sy in 0..<h {
            let rows = min(factor, height - sy * factor)
            for sx in 0..<w {
                let cols = min(factor, width - sx * factor)
                small[sy * w + sx] /= Float(rows * cols)
            }
        }
        let blurred = Self.gaussianBlur(small, width: w, height: h, sigma: crop.blurSigma * Double(max(w, h)))
        var x0 = w, y0 = h, x1 = -1, y1 = -1
        let threshold = Float(crop.threshold)
        for sy in 0..<h {
            for sx in 0..<w where blurred[sy * w + sx] > threshold {
                x0 = min(x0, sx); x1 = max(x1, sx)
                y0 = min(y0, sy); y1 = max(y1, sy)
            }
        }
        guard x1 >= 0 else { return whole }
        return Self.square(x0: x0 * factor, y0: y0 * factor, x1: min(width, (x1 + 1) * factor), y1: min(height, (y1 + 1) * factor))
    }

    /// The square with the box's centre and its longer side.
    static func square(x0: Int, y0: Int, x1: Int, y1: Int) -> CropBox {
        let w = x1 - x0, h = y1 - y0
        let side = max(w, h)
        return CropBox(x: x0 - (side - w) / 2, y: y0 - (side - h) / 2, side: side)
    }

    /// Separable Gaussian with edges replicated; kernel radius 3 sigma.
    static func gaussianBlur(_ image: [Float], width: Int, height: Int, sigma: Double) -> [Float] {
        guard sigma > 0.3 else { return image }
        let radius = max(1, Int((3 * sigma).rounded(.up)))
        var kernel = (-radius...radius).map { Float(Foundation.exp(-Double($0 * $0) / (2 * sigma * sigma))) }
        let total = kernel.reduce(0, +)
        kernel = kernel.map { $0 / total }
        var tmp = [Float](repeating: 0, count: image.count)
        var out = [Float](repeating: 0, count: image.count)
        for y in 0..<height {
            for x in 0..<width {
                var acc: Float = 0
                for k in -radius...radius { acc += kernel[k + radius] * image[y * width + min(max(x + k, 0), width - 1)] }
                tmp[y * width + x] = acc
            }
        }
        for y in 0..<height {
            for x in 0..<width {
                var acc: Float = 0
                for k in -radius...radius { acc += kernel[k + radius] * tmp[min(max(y + k, 0), height - 1) * width + x] }
                out[y * width + x] = acc
            }
        }
        return out
    }

    /// Crops `crop` from the slice, resamples each channel to the output size and normalises.
    /// `windowRow(rowStart, x0, x1, out)` writes the windowed channel values of source row pixels x0..<x1.
    private func resample(width: Int, height: Int, crop: CropBox, coverage: Double,
                          windowRow: (Int, Int, Int, inout [[Float]]) -> Void) -> ModelInput {
        let n = spec.outputSize, channels = spec.channels
        let horizontal = ResampleWeights(spanStart: crop.x, spanLength: crop.side, outputLength: n, sourceLimit: width)
        let vertical = ResampleWeights(spanStart: crop.y, spanLength: crop.side, outputLength: n, sourceLimit: height)
        let xs = horizontal.sourceRange, ys = vertical.sourceRange
        // Pass 1: window each needed source row once, resample it horizontally.
        var rowValues = [[Float]](repeating: [Float](repeating: 0, count: max(xs.count, 1)), count: channels)
        var rows = [Float](repeating: 0, count: channels * max(ys.count, 1) * n)
        for y in ys {
            windowRow(y * width, xs.lowerBound, xs.upperBound, &rowValues)
            for c in 0..<channels {
                let base = (c * ys.count + (y - ys.lowerBound)) * n
                rowValues[c].withUnsafeBufferPointer { src in
                    for i in 0..<n {
                        var acc: Float = 0
                        for t in horizontal.start[i]..<horizontal.start[i + 1] {
                            acc += horizontal.weight[t] * src[horizontal.index[t] - xs.lowerBound]
                        }
                        rows[base + i] = acc
                    }
                }
            }
        }
        // Pass 2: vertical, then normalise.
        var tensor = [Float](repeating: 0, count: channels * n * n)
        for c in 0..<channels {
            let mean = spec.mean[c], scale = 1 / spec.std[c]
            for j in 0..<n {
                let out = (c * n + j) * n
                for i in 0..<n { tensor[out + i] = 0 }
                for t in vertical.start[j]..<vertical.start[j + 1] {
                    let w = vertical.weight[t]
                    let src = (c * ys.count + (vertical.index[t] - ys.lowerBound)) * n
                    for i in 0..<n { tensor[out + i] += w * rows[src + i] }
                }
                for i in 0..<n { tensor[out + i] = (tensor[out + i] - mean) * scale }
            }
        }
        return ModelInput(size: n, channels: channels, tensor: tensor, crop: crop, brainCoverage: coverage)
    }
}

extension ModelInput {
    /// The windowed channels as an 8-bit image (un-normalised; one window per RGB channel) for people to look at.
    public func previewImage(spec: Preprocessing) -> Image8 {
        let plane = size * size
        var pixels = [UInt8](repeating: 0, count: plane * 3)
        for p in 0..<plane {
            for c in 0..<3 {
                let source = min(c, channels - 1)
                let v = tensor[source * plane + p] * spec.std[source] + spec.mean[source]
                pixels[p * 3 + c] = UInt8(min(max(v * 255, 0), 255).rounded())
            }
        }
        return Image8(width: size, height: size, channels: 3, pixels: pixels)
    }
}
