import ICHIngest
import ICHModel

/// Where the model looked for one class: a grid over layer4's feature map (8 x 8 for a 256-pixel input),
/// values in [0, 1], in model-input coordinates (the crop box maps them back onto the slice).
public struct Heatmap: Sendable, Equatable {
    public var classIndex: Int
    public var width: Int
    public var height: Int
    public var values: [Float]
}

/// The float view of a classifier head, for activation maps (an int8 fc is dequantised: maps are for people).
public enum HeadWeights: Sendable {
    case torchvision(weights: [Float], classes: Int)
    case fastai(fc1: LinearParameters, fc2: LinearParameters)

    public init(_ head: HeadParameters) {
        switch head {
        case .torchvision(let fc): self = .torchvision(weights: fc.weights, classes: fc.outFeatures)
        case .fastai(let fc1, let fc2): self = .fastai(fc1: fc1, fc2: fc2)
        }
    }

    public init(_ network: QuantizedResNet18) {
        switch network.head {
        case .torchvision(let fc):
            self = .torchvision(weights: (0..<fc.weights.count).map { Float(fc.weights[$0]) * fc.weightScales[$0 / fc.inFeatures] },
                                classes: fc.outFeatures)
        case .fastai(let fc1, let fc2): self = .fastai(fc1: fc1, fc2: fc2)
        }
    }
}

public enum ClassActivationMap {
    /// torchvision head (global average pool + fc): the exact CAM, sum over k of w[c][k] x A_k, then ReLU.
    /// fastai head (concat pool + two linear layers): Grad-CAM in closed form. With f = [max A, mean A],
    /// h = fc1(f), y_c = fc2_c(relu(h)): dy/df = fc1^T (fc2_c * [h > 0]); the spatial mean of dy/dA_k is
    /// (dy/dmax_k + dy/dmean_k) / HW, and the map is ReLU(sum over k of that weight x A_k).
    public static func compute(features a: FeatureMap, head: HeadWeights, classIndex c: Int) -> Heatmap {
        let n = a.height * a.width, k = a.channels
        let weight = gradientWeights(features: a, head: head, classIndex: c)
        var map = [Float](repeating: 0, count: n)
        for j in 0..<k where weight[j] != 0 {
            for p in 0..<n { map[p] += weight[j] * a.values[j * n + p] }
        }
        let top = map.max() ?? 0
        map = map.map { top > 0 ? max($0, 0) / top : 0 }
        return Heatmap(classIndex: c, width: a.width, height: a.height, values: map)
    }

    /// The per-channel weights of the map: fc weights (CAM) or spatially averaged gradients (Grad-CAM).
    public static func gradientWeights(features a: FeatureMap, head: HeadWeights, classIndex c: Int) -> [Float] {
        let n = a.height * a.width, k = a.channels
        var weight = [Float](repeating: 0, count: k)
        switch head {
        case .torchvision(let w, _):
            for j in 0..<k { weight[j] = w[c * k + j] }
        case .fastai(let fc1, let fc2):
            let f = FloatResNet18.globalMax(a) + FloatResNet18.globalAverage(a)
            let h = FloatResNet18.linear(f, fc1, relu: false)
            var gf = [Float](repeating: 0, count: fc1.inFeatures)
            for r in 0..<fc1.outFeatures where h[r] > 0 {
                let g = fc2.weights[c * fc2.inFeatures + r]
                for i in 0..<fc1.inFeatures { gf[i] += g * fc1.weights[r * fc1.inFeatures + i] }
            }
            for j in 0..<k { weight[j] = (gf[j] + gf[k + j]) / Float(n) }
        }
        return weight
    }

    /// The heatmap over a preview of the model input: grey brain window below, a blue-to-red scale on top
    /// where the map is above 0.2 (so that low evidence leaves the anatomy readable).
    public static func overlay(_ heatmap: Heatmap, on preview: Image8) -> Image8 {
        let w = preview.width, h = preview.height
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            // Bilinear, pixel centres aligned.
            let gy = min(max((Double(y) + 0.5) * Double(heatmap.height) / Double(h) - 0.5, 0), Double(heatmap.height - 1))
            let y0 = Int(gy), y1 = min(y0 + 1, heatmap.height - 1), ty = Float(gy - Double(y0))
            for x in 0..<w {
                let gx = min(max((Double(x) + 0.5) * Double(heatmap.width) / Double(w) - 0.5, 0), Double(heatmap.width - 1))
                let x0 = Int(gx), x1 = min(x0 + 1, heatmap.width - 1), tx = Float(gx - Double(x0))
                let v00 = heatmap.values[y0 * heatmap.width + x0], v01 = heatmap.values[y0 * heatmap.width + x1]
                let v10 = heatmap.values[y1 * heatmap.width + x0], v11 = heatmap.values[y1 * heatmap.width + x1]
                let v = (v00 * (1 - tx) + v01 * tx) * (1 - ty) + (v10 * (1 - tx) + v11 * tx) * ty
                let grey = Float(preview.pixels[(y * w + x) * preview.channels])
                var rgb = (grey, grey, grey)
                if v > 0.2 {
                    let heat = (min(1, max(0, 1.5 - abs(4 * v - 3))) * 255, min(1, max(0, 1.5 - abs(4 * v - 2))) * 255,
                                min(1, max(0, 1.5 - abs(4 * v - 1))) * 255)
                    let alpha: Float = 0.45
                    rgb = (grey * (1 - alpha) + heat.0 * alpha, grey * (1 - alpha) + heat.1 * alpha, grey * (1 - alpha) + heat.2 * alpha)
                }
                pixels[(y * w + x) * 3] = UInt8(rgb.0.rounded())
                pixels[(y * w + x) * 3 + 1] = UInt8(rgb.1.rounded())
                pixels[(y * w + x) * 3 + 2] = UInt8(rgb.2.rounded())
            }
        }
        return Image8(width: w, height: h, channels: 3, pixels: pixels)
    }
}
