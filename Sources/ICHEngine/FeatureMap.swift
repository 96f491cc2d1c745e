import ICHPreprocessing

/// A float activation tensor, channel-major (CHW, batch 1).
public struct FeatureMap: Sendable, Equatable {
    public var channels: Int
    public var height: Int
    public var width: Int
    public var values: [Float]

    public init(channels: Int, height: Int, width: Int, values: [Float]) {
        precondition(values.count == channels * height * width, "values do not fill \(channels)x\(height)x\(width)")
        self.channels = channels
        self.height = height
        self.width = width
        self.values = values
    }

    public init(channels: Int, height: Int, width: Int) {
        self.init(channels: channels, height: height, width: width, values: [Float](repeating: 0, count: channels * height * width))
    }
}

extension FeatureMap {
    /// A preprocessed slice as the network's input tensor.
    public init(_ input: ModelInput) {
        self.init(channels: input.channels, height: input.size, width: input.size, values: input.tensor)
    }

    /// A feature vector (pooled features, a hidden layer) as C x 1 x 1.
    public static func vector(_ values: [Float]) -> FeatureMap {
        FeatureMap(channels: values.count, height: 1, width: 1, values: values)
    }
}

/// Sees named activations as an executor produces them (calibration, SQNR, debugging).
public typealias ActivationObserver = (String, FeatureMap) -> Void

/// Gets each layer's name, wall time and multiply-accumulate count as an executor runs it.
public typealias LayerProfiler = (String, Duration, Int) -> Void

/// Per channel, the mean and the standard deviation of an activation over its plane: what the
/// out-of-distribution ensemble (`OODEnsemble`) reads of a layer.
public struct ChannelStatistics: Sendable, Equatable {
    public var means: [Float]
    public var deviations: [Float]

    public init(means: [Float], deviations: [Float]) {
        self.means = means
        self.deviations = deviations
    }

    /// The feature vector of an `OODSummary.statistic`: "mean" (the means), "mean+sd" (means, then deviations).
    public func vector(_ statistic: String) -> [Float] { statistic == "mean" ? means : means + deviations }

    /// From per-channel sums of values and of their squares over `count` values each, with the affine map
    /// real = scale x (value - zero) (zero 0 for the symmetric int16 path).
    init(sums: [Double], squares: [Double], count: Int, scale: Float, zero: Double = 0) {
        let n = Double(count)
        means = sums.map { Float(Double(scale) * ($0 / n - zero)) }
        deviations = zip(sums, squares).map { s, q in
            let m = s / n
            return Float(Double(scale) * max(0, q / n - m * m).squareRoot())
        }
    }
}

extension FeatureMap {
    /// This map's per-channel statistics (the float engine's; double accumulation).
    public var channelStatistics: ChannelStatistics {
        let plane = height * width
        var sums = [Double](repeating: 0, count: channels), squares = sums
        values.withUnsafeBufferPointer { v in
            for c in 0..<channels {
                var s = 0.0, q = 0.0
                for i in (c * plane)..<((c + 1) * plane) {
                    let x = Double(v[i])
                    s += x
                    q += x * x
                }
                sums[c] = s
                squares[c] = q
            }
        }
        return ChannelStatistics(sums: sums, squares: squares, count: plane, scale: 1)
    }
}
