import Foundation
import ICHModel

/// Per-channel equalisation of the byte activations the convolutions read (cross-layer equalisation in the
/// sense of Nagel et al., 2019, on activation ranges): a float transformation of the folded network that
/// leaves its function unchanged and gives the channels of each per-tensor byte scale more even ranges.
///
/// Why: one scale covers a whole tensor, so a channel whose values stay below a tenth of the tensor's largest
/// uses a tenth of the 256 steps. Measured on `make verify`'s random fastai network: the median channel's
/// largest value is 0.13-0.40 of its tensor's, the tenth percentile 0.004-0.2 (docs/converting.md). ReLU,
/// max pooling, residual adds and global pools all commute with multiplying a channel by a positive gain g, so
/// a channel can be multiplied by g where it is produced and divided by g where it is read:
/// - each block's conv1 output (read only by its conv2): conv1's row c times g, conv2's input column c over g;
/// - the residual stream of each stage (the stem and max pool for stage 1, the first block's downsample for
///   the others, every conv2 of the stage; all added to each other): one gain per channel for the whole stage,
///   divided out by the stage's second conv1, the next stage's first conv1 and downsample, or the head.
/// The convolutions' weights are per output channel, so scaling a row costs them nothing; a column divided by
/// g is rounded coarser relative to itself, which is why g grows only as (largest / channel's largest)^alpha,
/// and an amplified channel keeps `headroom` below its tensor's top.
public enum ChannelEqualization {
    public static let defaultAlpha: Float = 0.5
    /// No channel is amplified more than this (nor a channel calibration never saw above 0).
    public static let maxGain: Float = 16

    /// An amplified channel's largest calibration value stays at most 1 / headroom of its tensor's range: a
    /// channel that calibration saw little of (a feature of a rare finding) can still grow that much on a
    /// later slice before it clips. Without it, measured on the trained fastai head (1865 test slices), the
    /// worst slices were ones where an amplified layer4.0.conv1 channel went 1.4 x past the range.
    public static let headroom: Float = 2

    /// Gains for channels whose largest observed values are `maxima`.
    static func gains(_ maxima: [Float], alpha: Float) -> [Float] {
        let top = maxima.max() ?? 0
        return maxima.map { m in
            m > 0 && top > 0 ? max(1, min(maxGain, pow(top / m, alpha), top / (headroom * m))) : 1
        }
    }

    /// The equalised network. `maxima`: per-channel largest values of the float network's activations on the
    /// calibration slices, by the float executor's names ("stem", "maxpool", "layer1.0.conv1", "layer1.0", ...).
    public static func apply(_ p: ResNet18Parameters, maxima: [String: [Float]], alpha: Float = defaultAlpha) -> ResNet18Parameters {
        var q = p
        let names = ResNet18Parameters.blockNames
        for (i, name) in names.enumerated() {
            guard let m = maxima["\(name).conv1"] else { continue }
            let g = gains(m, alpha: alpha)
            q.blocks[i].conv1 = q.blocks[i].conv1.scalingOutputs(g)
            q.blocks[i].conv2 = q.blocks[i].conv2.dividingInputs(g)
        }
        for stage in 0..<4 {
            let first = 2 * stage, second = first + 1
            let members = [names[first], names[second]] + (stage == 0 ? ["stem", "maxpool"] : [])
            let stacked = members.compactMap { maxima[$0] }
            guard stacked.count == members.count else { continue }
            let m = stacked[0].indices.map { c in stacked.map { $0[c] }.max()! }
            let g = gains(m, alpha: alpha)
            if stage == 0 {
                q.stem = q.stem.scalingOutputs(g)
                q.blocks[first].conv1 = q.blocks[first].conv1.dividingInputs(g)
            } else {
                q.blocks[first].downsample = q.blocks[first].downsample!.scalingOutputs(g)
            }
            q.blocks[first].conv2 = q.blocks[first].conv2.scalingOutputs(g)
            q.blocks[second].conv2 = q.blocks[second].conv2.scalingOutputs(g)
            q.blocks[second].conv1 = q.blocks[second].conv1.dividingInputs(g)
            if stage < 3 {
                q.blocks[second + 1].conv1 = q.blocks[second + 1].conv1.dividingInputs(g)
                q.blocks[second + 1].downsample = q.blocks[second + 1].downsample!.dividingInputs(g)
            } else {
                switch q.head {
                case .torchvision(let fc): q.head = .torchvision(fc: fc.dividingInputs(g))
                // fastai's pooled features are each channel's max, then each channel's average.
                case .fastai(let fc1, let fc2): q.head = .fastai(fc1: fc1.dividingInputs(g + g), fc2: fc2)
                }
            }
        }
        return q
    }
}

extension ConvParameters {
    /// Output channel o multiplied by g[o] (weights and bias).
    func scalingOutputs(_ g: [Float]) -> ConvParameters {
        precondition(g.count == outChannels)
        var c = self
        let per = inChannels * kernel * kernel
        for o in 0..<outChannels {
            for j in 0..<per { c.weights[o * per + j] *= g[o] }
            c.bias[o] *= g[o]
        }
        return c
    }

    /// Input channel i divided by g[i].
    func dividingInputs(_ g: [Float]) -> ConvParameters {
        precondition(g.count == inChannels)
        var c = self
        let taps = kernel * kernel
        for o in 0..<outChannels {
            for i in 0..<inChannels {
                for t in 0..<taps { c.weights[(o * inChannels + i) * taps + t] /= g[i] }
            }
        }
        return c
    }
}

extension LinearParameters {
    /// Input feature i divided by g[i].
    func dividingInputs(_ g: [Float]) -> LinearParameters {
        precondition(g.count == inFeatures)
        var l = self
        for o in 0..<outFeatures {
            for i in 0..<inFeatures { l.weights[o * inFeatures + i] /= g[i] }
        }
        return l
    }
}
