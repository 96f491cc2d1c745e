/// Pooling kernels of the int8 engine; `ReferenceKernels` holds their naive twins.
public enum PoolKernels {
    /// 3x3 stride-2 max pool with padding 1 on bytes of one quantisation (padding never wins):
    /// rows first (three contiguous rows, vectorised), then three columns at stride 2.
    public static func maxPool3x3s2(input: UnsafePointer<UInt8>, channels: Int, height: Int, width: Int,
                                    output: UnsafeMutablePointer<UInt8>) {
        maxPool(input: input, channels: channels, height: height, width: width, output: output)
    }

    /// The same on 12-bit activations (FineActivations).
    public static func maxPool3x3s2(input: UnsafePointer<UInt16>, channels: Int, height: Int, width: Int,
                                    output: UnsafeMutablePointer<UInt16>) {
        maxPool(input: input, channels: channels, height: height, width: width, output: output)
    }

    @inline(__always)
    static func maxPool<T: FixedWidthInteger & UnsignedInteger>(input: UnsafePointer<T>, channels: Int, height: Int, width: Int,
                                                                output: UnsafeMutablePointer<T>) {
        let oh = ConvGeometry.outputLength(height, kernel: 3, stride: 2, padding: 1)
        let ow = ConvGeometry.outputLength(width, kernel: 3, stride: 2, padding: 1)
        withUnsafeTemporaryAllocation(of: T.self, capacity: width) { buffer in
            let rowMax = buffer.baseAddress!
            // Output columns whose three taps are all inside the row: a constant-stride loop LLVM vectorises.
            // (2ox - 1 >= 0 and 2ox + 1 <= width - 1, i.e. 1 <= ox < width / 2.)
            let interior = 1..<max(1, min(ow, width / 2))
            for c in 0..<channels {
                let plane = input + c * height * width
                for oy in 0..<oh {
                    let y0 = max(0, oy * 2 - 1), y1 = min(height - 1, oy * 2 + 1)
                    rowMax.update(from: plane + y0 * width, count: width)
                    var y = y0 + 1
                    while y <= y1 {
                        let row = plane + y * width
                        for x in 0..<width { rowMax[x] = max(rowMax[x], row[x]) }
                        y += 1
                    }
                    let out = output + (c * oh + oy) * ow
                    for ox in interior { out[ox] = max(max(rowMax[2 &* ox &- 1], rowMax[2 &* ox]), rowMax[2 &* ox &+ 1]) }
                    for ox in 0..<ow where !interior.contains(ox) {
                        let x0 = max(0, ox * 2 - 1), x1 = min(width - 1, ox * 2 + 1)
                        var m = rowMax[x0]
                        var x = x0 + 1
                        while x <= x1 {
                            m = max(m, rowMax[x])
                            x += 1
                        }
                        out[ox] = m
                    }
                }
            }
        }
    }
}
