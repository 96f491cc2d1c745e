import ICHModel
import ICHPhantom

/// A random ResNet18 state dict with PyTorch's names and realistic statistics (He-initialised convolutions,
/// BatchNorm gammas near 1, positive running variances, a small classifier), in either layout.
public enum RandomResNet18 {
    public static func stateDict(layout: WeightLayout, numClasses: Int, seed: UInt64) -> [String: NamedTensor] {
        var rng = SeededGenerator(seed: seed)
        var out: [String: NamedTensor] = [:]
        for (name, shape) in ResNet18Layout.expectedShapes(layout, numClasses: numClasses).sorted(by: { $0.key < $1.key }) {
            let n = shape.reduce(1, *)
            var values = [Float](repeating: 0, count: n)
            for i in 0..<n {
                if name.hasSuffix("running_var") {
                    values[i] = Float(0.5 + rng.unit())
                } else if name.hasSuffix("running_mean") || (name.hasSuffix(".bias") && shape.count == 1 && !name.hasPrefix("fc")) {
                    values[i] = Float(0.1 * rng.gaussian())
                } else if shape.count == 1 && name.hasSuffix(".weight") {
                    values[i] = Float(0.75 + 0.5 * rng.unit())  // BatchNorm gamma
                } else if shape.count == 1 {
                    values[i] = Float(0.1 * rng.gaussian())     // fc bias
                } else if name == "fc.weight" || name == "1.8.weight" {
                    // The classifier: small, so that logits land in the sigmoid's working range.
                    values[i] = Float(rng.gaussian() * 0.1 / Double(shape[1]).squareRoot())
                } else {
                    let fanIn = shape.dropFirst().reduce(1, *)
                    values[i] = Float(rng.gaussian() * (2 / Double(fanIn)).squareRoot())
                }
            }
            out[name] = NamedTensor(shape: shape, values: values)
        }
        return out
    }
}
