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
        // The median channel's largest value, relative to its tensor's largest, rises for every equalised tensor.
        func medianShare(_ m: [Float]) -> Float {
            let top = m.max()!
            return m.map { $0 / top }.sorted()[m.count / 2]
        }
        for name in ["maxpool", "layer1.0.conv1", "layer2.1", "layer3.0.conv1", "layer4.1"] {
            let old = medianShare(stats.channelMaxima[name]!), new = medianShare(equalStats.channelMaxima[name]!)
            #expect(new > old, "\(name): median channel share \(old) -> \(new)")
        }
    }

    @Test func gainsAreBoundedAndLeaveSilentChannelsAlone() {
        let g = ChannelEqualization.gains([8, 2, 0, 0.0001, 8], alpha: 0.5)
        #expect(g == [1, 2, 1, ChannelEqualization.maxGain, 1])
    }
}
