/// Stored pixel values to Hounsfield units: mask to Bits Stored, sign-extend when Pixel Representation is 1,
/// then HU = value x RescaleSlope + RescaleIntercept.
///
/// The RSNA 2019 gotcha: some scanners wrote 12-bit data as unsigned (Pixel Representation 0) with a Rescale
/// Intercept near 0 although the values had been shifted and wrapped: air appears near 3000 instead of -1000.
/// The research project (after the fastai notebook) repaired those slices by adding 1000 to the stored value,
/// subtracting 4096 where the sum is 4096 or more, and using intercept -1000. ichd does the same whenever
/// Pixel Representation is 0, Bits Stored is at most 12 (the wrap is at 2^12) and the intercept is above -100;
/// `wrapFixApplied` says it happened. Unsigned 16-bit data with such an intercept is converted as stored:
/// there is no 4096 wrap to undo.
public struct HounsfieldConversion: Sendable, Equatable {
    public static let wrapFixInterceptThreshold = -100.0
    public static let wrapFixModulus: Int32 = 4096
    public static let wrapFixOffset: Int32 = 1000
    public static let wrapFixIntercept = -1000.0

    public let slope: Double
    public let intercept: Double
    public let signed: Bool
    public let bitsStored: Int
    public let highBit: Int
    public let wrapFixApplied: Bool

    public init(slope: Double, intercept: Double, signed: Bool, bitsStored: Int, highBit: Int) {
        self.slope = slope
        self.signed = signed
        self.bitsStored = bitsStored
        self.highBit = highBit
        let wrapped = !signed && bitsStored <= 12 && intercept > Self.wrapFixInterceptThreshold
        self.wrapFixApplied = wrapped
        self.intercept = wrapped ? Self.wrapFixIntercept : intercept
    }

    /// The stored value a raw sample carries (masked, shifted down from High Bit, sign-extended), after the
    /// wrap fix when it applies.
    @inline(__always)
    public func storedValue(sample: UInt32) -> Int32 {
        let shift = UInt32(highBit + 1 - bitsStored)
        let unused = UInt32(32 - bitsStored)
        let bits = (sample >> shift) << unused
        var value = signed ? Int32(bitPattern: bits) >> Int32(unused) : Int32(bitPattern: bits >> unused)
        if wrapFixApplied {
            value &+= Self.wrapFixOffset
            if value >= Self.wrapFixModulus { value &-= Self.wrapFixModulus }
        }
        return value
    }

    @inline(__always)
    public func hounsfield(sample: UInt32) -> Float {
        Float(Double(storedValue(sample: sample)) * slope + intercept)
    }

    /// Converts `count` little-endian samples of `bitsAllocated` (8 or 16) bits.
    public func convert(samples: UnsafeRawBufferPointer, bitsAllocated: Int, count: Int,
                        into output: UnsafeMutableBufferPointer<Float>) {
        precondition(output.count >= count && samples.count >= count * bitsAllocated / 8)
        let slope = Float(self.slope)
        let intercept = Float(self.intercept)
        // Float arithmetic is exact here for every stored value (at most 16 bits) with integral slope;
        // for fractional slopes it rounds once, like the Double formula rounded to Float.
        if bitsAllocated == 16 {
            for i in 0..<count {
                let sample = UInt32(UInt16(littleEndian: samples.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                output[i] = Float(storedValue(sample: sample)) * slope + intercept
            }
        } else {
            for i in 0..<count {
                output[i] = Float(storedValue(sample: UInt32(samples[i]))) * slope + intercept
            }
        }
    }
}

/// One slice in Hounsfield units, row-major, `width` = Columns, `height` = Rows.
public struct HounsfieldImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [Float]

    public init(width: Int, height: Int, pixels: [Float]) {
        precondition(pixels.count == width * height)
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public subscript(x: Int, y: Int) -> Float { pixels[y * width + x] }

    public struct Statistics: Sendable, Equatable {
        public var min: Float
        public var max: Float
        public var mean: Double
    }

    public var statistics: Statistics {
        var lo = Float.infinity
        var hi = -Float.infinity
        var sum = 0.0
        for v in pixels {
            lo = Swift.min(lo, v)
            hi = Swift.max(hi, v)
            sum += Double(v)
        }
        return Statistics(min: lo, max: hi, mean: pixels.isEmpty ? 0 : sum / Double(pixels.count))
    }
}
