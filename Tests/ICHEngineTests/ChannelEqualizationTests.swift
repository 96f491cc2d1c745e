import ICHEngine
import ICHModel
import Testing

@testable import ICHConverter

@Suite struct ChannelEqualizationTests {
    /// Equalising changes how the network is written, not what it computes: the float logits stay (to float
    /// rounding), while the byte activations the convolutions read get channel ranges closer to each other.
    @Test(arguments: [WeightLayout.torchvision, .fastai])
    func equalisedNetworkComputesTheSameFunctionWithEvenerChannels(_ layout: WeightLayout) throws {
        let p = try Networks.parameters(layout, classes: 6, seed: 5)
        var stats = ActivationStatistics(expectedObservations: Networks.inputs.count)
        let float = FloatResNet18(p)
        let before = Networks.inputs.map { float.run($0) { stats.observe($0, $1) }.logits }
        let q = ChannelEqualization.apply(p, maxima: stats.channelMaxima)
        #expect(q != p)
        var equalStats = ActivationStatistics(expectedObservations: Networks.inputs.count)
        let equal = FloatResNet18(q)
        let after = Networks.inputs.map { equal.run($0) { equalStats.observe($0, $1) }.logits }
        for (a, b) in zip(before, after) {
            let scale = max(1, a.map { abs($0) }.max()!)
            for (x, y) in zip(a, b) { #expect(abs(x - y) / scale < 1e-4, "logit \(x) became \(y)") }
        }
        // The channels that calibration saw least of move up: the 10th percentile of the channels' largest values,
        // relative to the largest, rises (amplified channels stay below 1 / headroom of the top, so the upper half
        // barely moves). A stage's residual stream shares one gain per channel, so its channels are compared
        // by their largest value over the stage's tensors.
        func lowShare(_ names: [String], _ s: ActivationStatistics) -> Float {
            let maps = names.map { s.channelMaxima[$0]! }
            let m = maps[0].indices.map { c in maps.map { $0[c] }.max()! }
            let top = m.max()!
            return m.map { $0 / top }.sorted()[m.count / 10]
        }
        for names in [["layer1.0.conv1"], ["layer3.0.conv1"], ["layer4.1.conv1"], ["stem", "maxpool", "layer1.0", "layer1.1"],
                      ["layer2.0", "layer2.1"], ["layer4.0", "layer4.1"]] {
            let old = lowShare(names, stats), new = lowShare(names, equalStats)
            #expect(new > old, "\(names): 10th-percentile channel share \(old) -> \(new)")
        }
    }

    @Test func gainsAreBoundedAndLeaveSilentChannelsAlone() {
        // 8 / 2: sqrt(4) = 2, just at the headroom (8 / (2 x 2)); 8 / 6: sqrt would give 1.15 but the headroom
        // leaves it alone; 8 / 0.5: sqrt(16) = 4; 8 / 0.0001: at most 16.
        let maxima: [Float] = [8, 2, 0, 0.0001, 8, 6, 0.5]
        let g = ChannelEqualization.gains(maxima, alpha: 0.5)
        #expect(g == [1, 2, 1, ChannelEqualization.maxGain, 1, 1, 4])
        // Every amplified channel keeps the headroom below its tensor's top.
        for (m, gain) in zip(maxima, g) where gain > 1 { #expect(m * gain <= 8 / ChannelEqualization.headroom) }
    }
}
