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
