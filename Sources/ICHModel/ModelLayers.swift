/// The named layers of a quantised ResNet18, in execution order: the names the model file, the profiler and
/// the reports use ("stem", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.downsample", ..., "fc").
public enum ModelLayers {
    public static func convs(_ n: QuantizedResNet18) -> [(String, QuantizedConv)] {
        var list = [("stem", n.stem)]
        for (i, b) in n.blocks.enumerated() {
            let name = ResNet18Parameters.blockNames[i]
            list.append(("\(name).conv1", b.conv1))
            list.append(("\(name).conv2", b.conv2))
            if let d = b.downsample { list.append(("\(name).downsample", d)) }
        }
        return list
    }

    /// The head's int8 linear layers (torchvision's fc).
    public static func linears(_ head: QuantizedHead) -> [(String, QuantizedLinear)] {
        switch head {
        case .torchvision(let fc): [("fc", fc)]
        case .fastai: []
        }
    }

    /// The head's float32 linear layers (fastai's).
    public static func floatLinears(_ head: QuantizedHead) -> [(String, LinearParameters)] {
        switch head {
        case .torchvision: []
        case .fastai(let fc1, let fc2): [("head.fc1", fc1), ("head.fc2", fc2)]
        }
    }

}
