import ICHIngest
import ICHPhantom
import Testing

/// The held-out phantom family (docs/phantoms.md): deterministic, different from the standard family, with
/// non-blood high densities in negative series, and bleeds labelled as in the standard family.
@Suite struct HeldOutFamilyTests {
    @Test func deterministicAndApartFromTheStandardFamily() {
        let a = PhantomSeries(seed: 400_003, positive: true, size: 96, family: .heldOut).slices()
        let b = PhantomSeries(seed: 400_003, positive: true, size: 96, family: .heldOut).slices()
        #expect(a.map(\.image) == b.map(\.image) && a.map(\.labels) == b.map(\.labels))
        let standard = PhantomSeries(seed: 400_003, positive: true, size: 96).slices()
        #expect(a.map(\.image) != standard.map(\.image))
        // Its own UIDs: the two families never share an instance.
        #expect(Set(a.map(\.identity.sopInstanceUID)).isDisjoint(with: standard.map(\.identity.sopInstanceUID)))
        // The held-out draws come from their own stream: the head's height, so the slice count, is the standard
        // head's, and the series is still labelled positive somewhere.
        #expect(a.count == standard.count && a.contains { !$0.labels.isEmpty })
    }

    /// Negative held-out series carry dense non-blood structures in the brain (falx, sinus, calcifications)
    /// and no labels; across seeds, densities of 100-500 HU (calcifications, streaks) appear in the middle of
    /// the field, away from the calvarium, in most series (the standard family has none there).
    @Test func negativeSeriesCarryMimicsButNoLabels() {
        var withCalcification = 0, standardWith = 0
        for seed in UInt64(410_000)..<410_006 {
            for (family, count) in [(HeadPhantom.Family.heldOut, 1), (.standard, 0)] {
                let head = HeadPhantom(seed: seed, subtypes: [], family: family)
                var found = false
                for k in 0..<head.sliceCount {
                    let (image, subtypes, _) = head.render(slice: k, size: 128)
                    #expect(subtypes.isEmpty)
                    // The central third of the field: brain, far from the calvarium.
                    for y in 43..<85 { for x in 43..<85 where image.pixels[y * 128 + x] > 100 && image.pixels[y * 128 + x] < 500 { found = true } }
                }
                if found { if count == 1 { withCalcification += 1 } else { standardWith += 1 } }
            }
        }
        #expect(withCalcification >= 3, "calcifications in \(withCalcification) of 6 held-out negative series")
        #expect(standardWith == 0)
    }

    /// Bleeds placed by the standard rules are still drawn and labelled over the held-out and the varied
    /// family's anatomy (the varied family also shrinks some, down to a millimetre or two).
    @Test(arguments: HeadPhantom.Subtype.allCases, [HeadPhantom.Family.heldOut, .varied])
    func bleedsAreDrawnAndLabelled(_ subtype: HeadPhantom.Subtype, _ family: HeadPhantom.Family) {
        var drawn = 0
        for seed in UInt64(1)...6 {
            let head = HeadPhantom(seed: seed * 103, subtypes: [subtype], family: family)
            if (0..<head.sliceCount).contains(where: { head.render(slice: $0, size: 128).subtypes.contains(subtype) }) { drawn += 1 }
        }
        #expect(drawn >= 4, "\(subtype) drawn in \(drawn) of 6 \(family) series")
    }
}
