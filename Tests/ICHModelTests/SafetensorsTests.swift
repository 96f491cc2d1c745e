import Foundation
import ICHModel
import ICHTestSupport
import Testing

@Suite struct SafetensorsTests {
    let dir = TemporaryDirectory()

    @Test func roundTrip() throws {
        let tensors = ["a.weight": NamedTensor(shape: [2, 3], values: [1, -2, 3.5, 0, .leastNonzeroMagnitude, -1e30]),
                       "b": NamedTensor(shape: [1], values: [42])]
        try Safetensors.write(tensors, metadata: ["format": "pt"], to: dir.file("t.safetensors"))
        let file = try Safetensors.read(path: dir.file("t.safetensors"))
        #expect(file.tensors == tensors)
        #expect(file.metadata["format"] == "pt")
    }

    /// Hand-built file with F16, BF16 and an I64 counter, as PyTorch writes them.
    @Test func halfBfloatAndIntegerTensors() throws {
        let header = #"{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"n":{"dtype":"I64","shape":[],"data_offsets":[12,20]}}"#
        var data = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(Data(header.utf8))
        // F16: 1.0 (3C00), -2.0 (C000), 65504 (7BFF), smallest subnormal (0001)
        for h: UInt16 in [0x3C00, 0xC000, 0x7BFF, 0x0001] { withUnsafeBytes(of: h.littleEndian) { data.append(contentsOf: $0) } }
        // BF16: 1.0 (3F80), -0.5 (BF00)
        for h: UInt16 in [0x3F80, 0xBF00] { withUnsafeBytes(of: h.littleEndian) { data.append(contentsOf: $0) } }
        withUnsafeBytes(of: Int64(7).littleEndian) { data.append(contentsOf: $0) }
        let file = try Safetensors.parse(data)
        #expect(file.tensors["h"]?.values == [1, -2, 65504, Float(sign: .plus, exponent: -24, significand: 1)])
        #expect(file.tensors["b"]?.values == [1, -0.5])
        #expect(file.nonFloatTensors["n"] == "I64")
    }

    @Test func malformedFilesAreRefused() throws {
        #expect(throws: SafetensorsError.self) { _ = try Safetensors.parse(Data([1, 2, 3])) }
        var huge = Data()
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { huge.append(contentsOf: $0) }
        #expect(throws: SafetensorsError.self) { _ = try Safetensors.parse(huge + Data("{}".utf8)) }
        let header = #"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#
        var short = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { short.append(contentsOf: $0) }
        short.append(Data(header.utf8))
        short.append(Data(count: 8))
        #expect(throws: SafetensorsError.self) { _ = try Safetensors.parse(short) }  // 8 bytes for 4 floats
    }
}

@Suite struct LayoutTests {
    @Test(arguments: [WeightLayout.torchvision, .fastai])
    func detectsAndLoadsEachLayout(_ layout: WeightLayout) throws {
        let dict = RandomResNet18.stateDict(layout: layout, numClasses: 6, seed: 3)
        var file = Safetensors.File(tensors: dict, nonFloatTensors: ["\(layout == .torchvision ? "bn1" : "0.1").num_batches_tracked": "I64"], metadata: [:])
        #expect(ResNet18Layout.detect(file.tensors.keys) == layout)
        let params = try ResNet18Layout.load(file)
        #expect(params.numClasses == 6)
        #expect(params.head.layout == layout)
        #expect(params.blocks.count == 8)
        #expect(params.blocks.map { $0.downsample != nil } == [false, false, true, false, true, false, true, false])
        #expect(params.blocks[2].conv1.stride == 2 && params.blocks[2].downsample?.stride == 2)
        // Forcing the other layout names what is missing.
        file.nonFloatTensors = [:]
        let error = layoutError { () throws(LayoutError) in _ = try ResNet18Layout.load(file, layout: layout == .torchvision ? .fastai : .torchvision) }
        #expect(error?.missing.isEmpty == false)
        #expect(error?.unexpected.isEmpty == false)
    }

    @Test func everyProblemIsNamed() throws {
        var dict = RandomResNet18.stateDict(layout: .torchvision, numClasses: 2, seed: 1)
        dict["layer3.1.bn2.running_var"] = nil
        dict["layer1.0.conv1.weight"] = NamedTensor(shape: [64, 64, 1, 1], values: .init(repeating: 0.1, count: 4096))
        dict["extra.thing"] = NamedTensor(shape: [1], values: [0])
        var bad = dict["layer4.0.bn1.weight"]!
        bad.values[3] = .nan
        dict["layer4.0.bn1.weight"] = bad
        let found = layoutError { () throws(LayoutError) in _ = try ResNet18Layout.load(Safetensors.File(tensors: dict)) }
        let error = try #require(found, "accepted a broken state dict")
        #expect(error.missing == ["layer3.1.bn2.running_var"])
        #expect(error.unexpected == ["extra.thing"])
        #expect(error.misshaped.count == 1)
        #expect(error.misshaped.first?.contains("layer1.0.conv1.weight") == true)
        #expect(error.description.contains("layer4.0.bn1.weight holds NaN"))
    }

    /// Folding conv + BatchNorm must equal BatchNorm applied after the raw convolution.
    @Test func batchNormFoldingIsExactForTheStem() throws {
        let dict = RandomResNet18.stateDict(layout: .torchvision, numClasses: 1, seed: 9)
        let stem = try ResNet18Layout.load(Safetensors.File(tensors: dict, nonFloatTensors: [:], metadata: [:])).stem
        let w = dict["conv1.weight"]!.values
        let g = dict["bn1.weight"]!.values, b = dict["bn1.bias"]!.values
        let m = dict["bn1.running_mean"]!.values, v = dict["bn1.running_var"]!.values
        // One output pixel at the centre of a constant-1 input: conv = sum of the kernel.
        for o in [0, 17, 63] {
            let raw = w[(o * 147)..<((o + 1) * 147)].reduce(0.0) { $0 + Double($1) }
            let bn = (raw - Double(m[o])) / (Double(v[o]) + 1e-5).squareRoot() * Double(g[o]) + Double(b[o])
            let folded = stem.weights[(o * 147)..<((o + 1) * 147)].reduce(0.0) { $0 + Double($1) } + Double(stem.bias[o])
            #expect(abs(bn - folded) < 1e-5 * max(1, abs(bn)))
        }
    }
}

/// The error a layout load threw, or nil (a helper: catching typed errors inside #expect trips the compiler).
func layoutError(_ body: () throws(LayoutError) -> Void) -> LayoutError? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}
