/// A convolution after BatchNorm folding: weights OIHW, one bias per output channel.
public struct ConvParameters: Sendable, Equatable {
    public var outChannels: Int
    public var inChannels: Int
    public var kernel: Int
    public var stride: Int
    public var padding: Int
    public var weights: [Float]
    public var bias: [Float]

    public init(outChannels: Int, inChannels: Int, kernel: Int, stride: Int, padding: Int, weights: [Float], bias: [Float]) {
        precondition(weights.count == outChannels * inChannels * kernel * kernel && bias.count == outChannels)
        self.outChannels = outChannels
        self.inChannels = inChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.weights = weights
        self.bias = bias
    }

    public var macsPerOutputPixel: Int { inChannels * kernel * kernel * outChannels }
}

/// A fully connected layer: weights [out][in], bias [out].
public struct LinearParameters: Sendable, Equatable {
    public var outFeatures: Int
    public var inFeatures: Int
    public var weights: [Float]
    public var bias: [Float]

    public init(outFeatures: Int, inFeatures: Int, weights: [Float], bias: [Float]) {
        precondition(weights.count == outFeatures * inFeatures && bias.count == outFeatures)
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.weights = weights
        self.bias = bias
    }
}

/// ResNet's basic block: relu(conv2(relu(conv1(x))) + shortcut(x)), shortcut = x or a strided 1x1 conv.
public struct BasicBlockParameters: Sendable, Equatable {
    public var conv1: ConvParameters
    public var conv2: ConvParameters
    public var downsample: ConvParameters?
}

/// The classifier on top of the 512-channel feature map.
public enum HeadParameters: Sendable, Equatable {
    /// torchvision: global average pool, then fc (512 -> N).
    case torchvision(fc: LinearParameters)
    /// fastai: concat pool (max then average, 1024), BatchNorm1d folded into fc1 (1024 -> 512), ReLU,
    /// BatchNorm1d folded into fc2 (512 -> N). Dropout is the identity at inference.
    case fastai(fc1: LinearParameters, fc2: LinearParameters)

    public var layout: WeightLayout {
        switch self {
        case .torchvision: .torchvision
        case .fastai: .fastai
        }
    }
}

public enum WeightLayout: String, Codable, Sendable, CaseIterable {
    case torchvision
    case fastai
}

/// A float ResNet18 with every BatchNorm folded away: what the float executor runs and the quantiser reads.
public struct ResNet18Parameters: Sendable, Equatable {
    public var stem: ConvParameters
    /// layer1.0, layer1.1, layer2.0, ..., layer4.1
    public var blocks: [BasicBlockParameters]
    public var head: HeadParameters

    public var numClasses: Int {
        switch head {
        case .torchvision(let fc): fc.outFeatures
        case .fastai(_, let fc2): fc2.outFeatures
        }
    }

    /// "layer2.0" style names of the blocks, in order.
    public static let blockNames = (1...4).flatMap { l in (0...1).map { "layer\(l).\($0)" } }

    /// The channels of a named activation that channel statistics are taken from ("stem", "maxpool", a block
    /// output "layerN.i"), nil for any other name.
    public static func channels(of activation: String) -> Int? {
        if activation == "stem" || activation == "maxpool" { return 64 }
        guard let i = blockNames.firstIndex(of: activation) else { return nil }
        return 64 << (i / 2)
    }
}
