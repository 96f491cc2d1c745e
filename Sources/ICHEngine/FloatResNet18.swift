import ICHKernels
import ICHModel

/// The float32 reference executor: ResNet18 exactly as the folded parameters describe it. Convolutions run as
/// im2col + a small float GEMM (ICHKernels.FloatConvGEMM; checked against direct loops and ONNX Runtime). It is
/// the converter's calibration engine, `ichd eval --reference`, and the oracle of the int8 executor's tests.
public struct FloatResNet18: Sendable {
    public let parameters: ResNet18Parameters

    public init(_ parameters: ResNet18Parameters) {
        self.parameters = parameters
    }

    public struct Output: Sendable {
        public var logits: [Float]
        /// layer4's output (512 x H/32 x W/32): what class activation maps are made of.
        public var features: FeatureMap
    }

    /// Runs the network on a normalised CHW input. `observe` sees every activation the int8 model quantises,
    /// by name ("input", "stem", "layer1.0.conv1", "layer1.0", "layer2.0.downsample", ..., "pool", "head.fc1"),
    /// and "maxpool" (the input of layer1, quantised with the stem's parameters).
    public func run(_ input: FeatureMap, observe: ActivationObserver? = nil) -> Output {
        precondition(input.channels == 3, "ResNet18 takes 3 channels")
        observe?("input", input)
        var x = Self.conv(input, parameters.stem, relu: true)
        observe?("stem", x)
        x = Self.maxPool(x)
        observe?("maxpool", x)
        for (i, block) in parameters.blocks.enumerated() {
            let name = ResNet18Parameters.blockNames[i]
            let mid = Self.conv(x, block.conv1, relu: true)
            observe?("\(name).conv1", mid)
            var shortcut = x
            if let down = block.downsample {
                shortcut = Self.conv(x, down, relu: false)
                observe?("\(name).downsample", shortcut)
            }
            x = Self.conv(mid, block.conv2, relu: true, residual: shortcut)
            observe?(name, x)
        }
        let features = x
        let logits: [Float]
        switch parameters.head {
        case .torchvision(let fc):
            let pooled = Self.globalAverage(features)
            observe?("pool", .vector(pooled))
            logits = Self.linear(pooled, fc, relu: false)
        case .fastai(let fc1, let fc2):
            let pooled = Self.globalMax(features) + Self.globalAverage(features)
            observe?("pool", .vector(pooled))
            let hidden = Self.linear(pooled, fc1, relu: true)
            observe?("head.fc1", .vector(hidden))
            logits = Self.linear(hidden, fc2, relu: false)
        }
        return Output(logits: logits, features: features)
    }

    // MARK: Operators

    /// out[o] = bias[o] + sum over i, ky, kx of w[o][i][ky][kx] * in[i][oy*s+ky-p][ox*s+kx-p] (+ residual), then ReLU.
    public static func conv(_ x: FeatureMap, _ p: ConvParameters, relu: Bool, residual: FeatureMap? = nil) -> FeatureMap {
        precondition(x.channels == p.inChannels)
        let shape = ReferenceKernels.ConvShape(inChannels: p.inChannels, inHeight: x.height, inWidth: x.width,
                                               outChannels: p.outChannels, kernel: p.kernel, stride: p.stride, padding: p.padding)
        var out = FeatureMap(channels: p.outChannels, height: shape.outHeight, width: shape.outWidth)
        var scratch = [Float](repeating: 0, count: FloatConvGEMM.scratchCount(shape))
        x.values.withUnsafeBufferPointer { src in
            p.weights.withUnsafeBufferPointer { w in
                p.bias.withUnsafeBufferPointer { b in
                    out.values.withUnsafeMutableBufferPointer { dst in
                        scratch.withUnsafeMutableBufferPointer { col in
                            func run(_ r: UnsafePointer<Float>?) {
                                FloatConvGEMM.conv(shape, input: src.baseAddress!, weights: w.baseAddress!, bias: b.baseAddress!,
                                                   residual: r, relu: relu, output: dst.baseAddress!, scratch: col.baseAddress!)
                            }
                            if let residual {
                                residual.values.withUnsafeBufferPointer { run($0.baseAddress!) }
                            } else {
                                run(nil)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// 3x3, stride 2, padding 1 (padding never wins the max).
    public static func maxPool(_ x: FeatureMap) -> FeatureMap {
        let oh = ConvGeometry.outputLength(x.height, kernel: 3, stride: 2, padding: 1)
        let ow = ConvGeometry.outputLength(x.width, kernel: 3, stride: 2, padding: 1)
        var out = FeatureMap(channels: x.channels, height: oh, width: ow)
        for c in 0..<x.channels {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var m = -Float.infinity
                    for ky in 0..<3 {
                        let iy = oy * 2 + ky - 1
                        guard iy >= 0 && iy < x.height else { continue }
                        for kx in 0..<3 {
                            let ix = ox * 2 + kx - 1
                            guard ix >= 0 && ix < x.width else { continue }
                            m = max(m, x.values[(c * x.height + iy) * x.width + ix])
                        }
                    }
                    out.values[(c * oh + oy) * ow + ox] = m
                }
            }
        }
        return out
    }

    public static func globalAverage(_ x: FeatureMap) -> [Float] {
        let n = x.height * x.width
        return (0..<x.channels).map { c in
            var sum = 0.0
            for j in 0..<n { sum += Double(x.values[c * n + j]) }
            return Float(sum / Double(n))
        }
    }

    public static func globalMax(_ x: FeatureMap) -> [Float] {
        let n = x.height * x.width
        return (0..<x.channels).map { c in x.values[(c * n)..<((c + 1) * n)].max()! }
    }

    public static func linear(_ x: [Float], _ p: LinearParameters, relu: Bool) -> [Float] {
        precondition(x.count == p.inFeatures)
        return (0..<p.outFeatures).map { o in
            var acc = Double(p.bias[o])
            for i in 0..<p.inFeatures { acc += Double(p.weights[o * p.inFeatures + i]) * Double(x[i]) }
            let v = Float(acc)
            return relu ? max(v, 0) : v
        }
    }
}

/// The logistic function, per class: the model is multi-label.
@inline(__always)
public func sigmoid(_ x: Float) -> Float {
    1 / (1 + expf(-x))
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
