import ICHIngest
import ICHPhantom
import Testing

/// The varied family (docs/phantoms.md), what the bundled model is trained on: deterministic, its own UIDs and
/// acquisition geometry, dense non-blood structures in negative series (its bleeds: HeldOutFamilyTests'
/// `bleedsAreDrawnAndLabelled`, for both families).
@Suite struct VariedFamilyTests {
    @Test func deterministicWithItsOwnIdentitiesAndGeometry() {
        let a = PhantomSeries(seed: 100_007, positive: true, size: 96, family: .varied).slices()
        let b = PhantomSeries(seed: 100_007, positive: true, size: 96, family: .varied).slices()
        #expect(a.map(\.image) == b.map(\.image) && a.map(\.labels) == b.map(\.labels))
        let others = [HeadPhantom.Family.standard, .heldOut].flatMap { PhantomSeries(seed: 100_007, positive: true, size: 96, family: $0).slices() }
        #expect(Set(a.map(\.identity.sopInstanceUID)).isDisjoint(with: others.map(\.identity.sopInstanceUID)))
        #expect(a.contains { !$0.labels.isEmpty })
        // Acquisition varies by series: field of view (pixel spacing) and slice thickness, written as drawn.
        let heads = (UInt64(0)..<12).map { HeadPhantom(seed: 100_000 + $0, subtypes: [], family: .varied) }
        #expect(Set(heads.map(\.fieldOfView)).count == 12 && heads.allSatisfy { (200...260).contains($0.fieldOfView) })
        #expect(Set(heads.map(\.sliceThickness)).count >= 2)
        let head = HeadPhantom(seed: 100_007, subtypes: [], family: .varied)
        #expect(a.count == head.sliceCount)
        #expect(a[0].identity.pixelSpacing == [head.fieldOfView / 96, head.fieldOfView / 96] && a[0].identity.sliceThickness == head.sliceThickness)
        #expect(a[1].identity.imagePositionPatient[2] - a[0].identity.imagePositionPatient[2] == head.spacing)
    }

    /// Negative series carry dense structures that are not blood (falx, sinuses, calcifications, skull base,
    /// orbital roofs) in the brain's part of the field, and blood-like densities (50-90 HU) outside any bleed,
    /// with no labels.
    @Test func negativeSeriesCarryMimicsButNoLabels() {
        var withCalcification = 0, withBloodLikeDensity = 0
        for seed in UInt64(110_000)..<110_006 {
            let head = HeadPhantom(seed: seed, subtypes: [], family: .varied)
            var calcified = false, bloodLike = 0
            for k in 0..<head.sliceCount {
                let (image, subtypes, pixels) = head.render(slice: k, size: 128)
                #expect(subtypes.isEmpty && pixels.isEmpty)
                for y in 40..<88 {
                    for x in 40..<88 {
                        let hu = image.pixels[y * 128 + x]
                        if hu > 100 && hu < 900 { calcified = true }
                        if hu >= 55 && hu <= 85 { bloodLike += 1 }
                    }
                }
            }
            if calcified { withCalcification += 1 }
            if bloodLike > 20 { withBloodLikeDensity += 1 }
        }
        #expect(withCalcification >= 4, "non-blood high densities in \(withCalcification) of 6 negative series")
        #expect(withBloodLikeDensity >= 4, "blood-like densities in \(withBloodLikeDensity) of 6 negative series")
    }
}
