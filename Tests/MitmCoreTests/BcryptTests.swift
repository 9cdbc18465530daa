import Testing

@testable import MitmCore
import MitmTestSupport

// MARK: - Blowfish

@Suite("Blowfish: the cipher under bcrypt")
struct BlowfishTests {
    @Test("The constants are the digits of pi where the specification says")
    func constants() {
        #expect(Blowfish.initialP.count == 18)
        #expect(Blowfish.initialS.count == 1024)
        #expect(Blowfish.initialP.first == 0x243F_6A88)
        #expect(Blowfish.initialP.last == 0x8979_FB1B)
        #expect(Blowfish.initialS[0] == 0xD131_0BA6)  // S1[0]
        #expect(Blowfish.initialS[256] == 0x4B7A_70E9)  // S2[0]
        #expect(Blowfish.initialS[512] == 0xE93D_5A68)  // S3[0]
        #expect(Blowfish.initialS[768] == 0x3A39_CE37)  // S4[0]
        #expect(Blowfish.initialS[1023] == 0x3AC3_72E6)  // S4[255]
    }

    @Test(
        "Published and OpenSSL vectors",
        arguments: [
            // Eric Young's set (key, plaintext, ciphertext).
            ("0000000000000000", "0000000000000000", "4EF997456198DD78"),
            ("FFFFFFFFFFFFFFFF", "FFFFFFFFFFFFFFFF", "51866FD5B85ECB8A"),
            // `openssl enc -bf-ecb -nopad -K …` (16-byte keys; OpenSSL pads shorter ones).
            ("0123456789ABCDEFFEDCBA9876543210", "0123456789ABCDEF", "2FA4107FB809C976"),
            ("000102030405060708090A0B0C0D0E0F", "FEDCBA9876543210", "41F341E6FFB60B34"),
        ]
    )
    func vectors(key: String, plaintext: String, ciphertext: String) {
        let cipher = Blowfish(key: bytes(hex: key))
        let words = Blowfish.words(of: bytes(hex: plaintext))
        let (left, right) = cipher.encrypt(words[0], words[1])
        #expect(hexString(left) + hexString(right) == ciphertext)
    }
}

// MARK: - bcrypt

@Suite("bcrypt: verification against Python bcrypt 5.0.0 and OpenBSD")
struct BcryptTests {
    @Test("Classic published vectors (OpenBSD regress, jBCrypt, crypt_blowfish)", arguments: BcryptVectors.classic)
    func classic(password: String, hash: String) {
        #expect(Bcrypt.verify(password: password, hash: hash))
        #expect(!Bcrypt.verify(password: password + "x", hash: hash))
    }

    @Test("The published vector with a 98-byte password: truncated by OpenBSD, refused by bcrypt 5")
    func classicLongPassword() {
        let password =
            "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored"
        let hash = "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"
        #expect(Bcrypt.verify(password: password, hash: hash, longPasswords: .truncate))
        #expect(!Bcrypt.verify(password: password, hash: hash))
        #expect(Bcrypt.verify(password: String(password.prefix(72)), hash: hash))
    }

    @Test("Vectors generated with Python bcrypt.hashpw (costs 4-6; 2a, 2b and 2y)")
    func generated() throws {
        #expect(BcryptVectors.generated.count >= 30)
        for (passwordHex, hash) in BcryptVectors.generated {
            let password = bytes(hex: passwordHex)
            #expect(Bcrypt.verify(password: password, hash: hash), "\(passwordHex) \(hash)")
            #expect(!Bcrypt.verify(password: password + [0x61], hash: hash), "\(passwordHex) \(hash)")
            // Recomputing with the same salt reproduces the string byte for byte.
            let parsed = try #require(Bcrypt.ParsedHash(hash))
            let again = try Bcrypt.hash(
                password: password,
                cost: parsed.cost,
                salt: parsed.salt,
                variant: parsed.variant
            )
            #expect(again == hash)
        }
    }

    @Test("Passwords over 72 bytes: rejected as bcrypt 5 rejects them, or truncated as bcrypt 4 did")
    func longPasswords() {
        for (passwordHex, hash) in BcryptVectors.longPasswords {
            let password = bytes(hex: passwordHex)
            #expect(password.count > 72)
            #expect(!Bcrypt.verify(password: password, hash: hash))
            #expect(Bcrypt.verify(password: password, hash: hash, longPasswords: .truncate))
            #expect(Bcrypt.verify(password: Array(password.prefix(72)), hash: hash))
        }
        #expect(throws: Bcrypt.HashError.self) {
            try Bcrypt.hash(
                password: [UInt8](repeating: 0x61, count: 73),
                cost: 4,
                salt: [UInt8](repeating: 0, count: 16)
            )
        }
    }

    @Test("A NUL byte is part of the key, not the end of the password")
    func nulByte() {
        let hash = BcryptVectors.generated.first { $0.passwordHex == "610062" }!.hash
        #expect(Bcrypt.verify(password: [0x61, 0x00, 0x62], hash: hash))
        #expect(!Bcrypt.verify(password: [0x61], hash: hash))
    }

    @Test(
        "Malformed hashes are false, never a crash",
        arguments: [
            "", "$2b$", "$2x$04$KhgcUkw76mg.J3yIGpk9euT/RtR7x/p9zjJr/fXwC1XvXhR3CakAi",
            "$2b$03$KhgcUkw76mg.J3yIGpk9euT/RtR7x/p9zjJr/fXwC1XvXhR3CakAi",
            "$2b$32$KhgcUkw76mg.J3yIGpk9euT/RtR7x/p9zjJr/fXwC1XvXhR3CakAi",
            "$2b$4$KhgcUkw76mg.J3yIGpk9euT/RtR7x/p9zjJr/fXwC1XvXhR3CakAiX",
            "$2b$04$KhgcUkw76mg.J3yIGpk9euT/RtR7x/p9zjJr/fXwC1XvXhR3CakA",
            "$2b$04$KhgcUkw76mg.J3yIGpk9eu!/RtR7x/p9zjJr/fXwC1XvXhR3CakAi",
            "$2b$04$KhgcUkw76mg.J3yIGpk9euT/RtR7x/p9zjJr/fXwC1XvXhR3Cak€",
            "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=",
        ]
    )
    func malformed(hash: String) {
        #expect(!Bcrypt.verify(password: "x", hash: hash))
    }

    @Test("Argument errors read well")
    func hashErrors() {
        #expect(throws: Bcrypt.HashError(description: "bcrypt cost 3 is outside 4...31")) {
            try Bcrypt.hash(password: "x", cost: 3, salt: [UInt8](repeating: 0, count: 16))
        }
        #expect(throws: Bcrypt.HashError(description: "bcrypt salt must be 16 bytes, got 3")) {
            try Bcrypt.hash(password: "x", cost: 4, salt: [1, 2, 3])
        }
    }

    @Test("bcrypt base64 round-trips")
    func base64() {
        var generator = SplitMix64(seed: 7)
        for length in 0..<40 {
            let data = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let text = BcryptBase64.encode(data)
            #expect(BcryptBase64.decode(Array(text.utf8)[...], count: length) == data)
        }
    }

    /// Not a timed assertion: prints how long one cost-12 check takes (`swift test -c release`
    /// for the number that matters; debug builds are far slower).
    @Test("Cost-12 verification time (printed)")
    func cost12Timing() throws {
        let salt = Array("0123456789abcdef".utf8)
        let clock = ContinuousClock()
        var hash = ""
        let elapsed = try clock.measure {
            hash = try Bcrypt.hash(password: "timing", cost: 12, salt: salt)
        }
        print("bcrypt cost 12: \(elapsed) for one hash (\(hash))")
        #expect(hash.hasPrefix("$2b$12$"))
    }
}

// MARK: - Fixtures

enum BcryptVectors {
    static let classic: [(String, String)] = [
        ("", "$2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s."),
        ("a", "$2a$06$m0CrhHm10qJ3lXRY.5zDGO3rS2KdeeWLuGmsfGlMfOxih58VYVfxe"),
        ("abc", "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i"),
        ("abcdefghijklmnopqrstuvwxyz", "$2a$06$.rCVZVOThsIa97pEDOxvGuRRgzG64bvtJ0938xuqzv18d3ZpQhstC"),
        ("~!@#$%^&*()      ~!@#$%^&*()PNBFRD", "$2a$06$fPIsBO8qRqkjj273rfaOI.HtSV9jLDpTbZn782DC6/t7qT67P6FfO"),
        ("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
        ("U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"),
        ("U*U*U", "$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a"),
        ("", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy"),
    ]

    /// Produced by `bcrypt.hashpw(password, bcrypt.gensalt(cost, prefix=…))` with Python bcrypt
    /// 5.0.0 (every fifth re-tagged `$2y$` and re-checked with `bcrypt.checkpw`). Passwords in hex.
    static let generated: [(passwordHex: String, hash: String)] = [
        ("", "$2b$04$wUVnQEmuseuWQ52EuYGqKeaJf7P9wtrL83Qar5dCPXbm5mzZXq3hC"),
        ("61", "$2a$05$ooEVIY1sMTjO6wCVFb0rBuG/ygo0ftO5T9vQtq.CvbGpdt01X/q9W"),
        ("70617373776f7264", "$2b$06$KQydaOLFR9O1nRj2Ds/kkuhJmonfRGTfRNK.gDjccXwrSIs1sszhe"),
        (
            "636f727265637420686f727365206261747465727920737461706c65",
            "$2a$04$HyL93izeEWj6D2fI9px6kuRriqQF3tjXiRezufbniXdZKvzutPBMK"
        ),
        ("70c3a4737377c3b67264", "$2y$05$h4.v6nNUJfM6HBNrn3uTU.F7uM6M9LjeclqpeheavVD23hVverOSC"),
        ("e5af86e7a081f09f9491", "$2a$06$0dcEodQ2iEL2R.V.11UuuuoqQPqOHw7EZx2ZrSyoPGisFFBL7Oq9W"),
        ("776974683a636f6c6f6e", "$2b$04$eBnCM.QPpQfPP6het9HPieDJuojaSJYG0Lg15XHjSpIrK3UKkzNbG"),
        ("610062", "$2a$05$b9p882SUC6DC8c2I2XYGD.aUgG2FKNNIiaLRNHlQq5vDBvOEALAse"),
        (
            "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878",
            "$2b$06$SMC4Vt/4RXWzRIGvcUxieestPQXgAK9LjC0LwFmV58NRo/ujmOeOa"
        ),
        (
            "797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979",
            "$2y$04$xZ7ORQxGMoQ0tGCWNnDAhuOYwJP7Okl5JkjoMKKucAET0qO9hwXWW"
        ),
        (
            "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748",
            "$2b$05$J9uGBg2wG35gJqaijmLVnuwxCEhzeE1DuL2YfV4nYIr9CjwdwLbp2"
        ),
        (
            "c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9",
            "$2a$06$DnLDUVv.sJurOjmS7TPjYO5DLT/1ixxojdt36y2TxnacGM4kc0koi"
        ),
        (
            "3b583c7b65683b586376334040443b554d5a5e4825384b52725925565d335b433a",
            "$2b$04$xNPZ9g/bvN06H4SSWgEZ3eUFDaE6fF.bsF0hh7CoTcxcjKS66DV2u"
        ),
        (
            "3d4340425d5a483c686d3553367878284d3e594878262d71325f42356b5f52503072365b2d555631635a42333f75724a316d",
            "$2a$05$N3Lxs1.c69ydWZ6VmSvKzOGj2ZvzNveHsP5fFaaqdamwc0J.xTv1a"
        ),
        (
            "3a705778214b413745765a7478722d392f506b6f2f7d324a6a434b6c705846422b3742532e7b762c2b3f302c6844394f2f69",
            "$2y$06$E.QEas8yk9iLIsS/yWAkvedFE3UKCtgQ4cDJtMRsoSPRFt4lIaMU2"
        ),
        (
            "2e324a6338465146366341262a31455a2d2b5d65582d252d725b2f64644d6767316d687a4c615049383941617925365f533a613758582a6856364c397566394438292944585d61",
            "$2a$04$bytc1NZyjrX01JSOsgid0.itFxu3eLMclWOOmQvbflGg9tG.4iPca"
        ),
        (
            "52416e66423a6d4b3e4f3c4f354b4d2f4f7d5a507b2349216f56706252324344266a295f6c2b742431422a3c4335242c47632f6f372c66636f706f46536879414f2b3948352a734c",
            "$2b$05$adJJcIrL/bm602cwB4LqceH5z6qEGTfU7ZBXutN6Ij62olwy/TbCm"
        ),
        ("3a7a635a6a5336642344623171722a2f", "$2a$06$eD1KhXXT8o920Z87GBe02uo9LXmJ7A5X5SFhaj/HIAc4uAucJixTe"),
        (
            "2d4d594a2c63406677467036344f3d4a25785b4121363a456728516149532a4d4b737672427344333747234c342a254a617923545a5d3f776b4a2e727d6a404c2132263144696b",
            "$2b$04$zedozouyOMkZ/V1XyDJkAOatZ4eB6eCEZaPVbEzlu2co18Bka7UlO"
        ),
        ("2d347737542f326975537a5375592339", "$2y$05$P9Sy.DWVn8KgxAu4UQOlqO68EzBKl01eCSbhpOjn.gIeTVMqSnobi"),
        (
            "69324e2a49434728446d626e375f6462396e546c3c65373b525e745e21216446382835653e346f6f38565926462a3c6c4d66614b517a59557b6974387078626b634d35796525",
            "$2b$06$ksPrL8/xvwujfuoO13AWc.wnyNtKWCeJN0l4Mx3G2L/M4zlTsmu.."
        ),
        (
            "73775d716f6941765978474a39426769343a792a634f2941245e772b3373493771",
            "$2a$04$/9O22VUySEpCvwBSDsZbdOEODSNC.jYHddqXZ6Bnx6F4bjimfZAOa"
        ),
        ("6a4c2d594c", "$2b$05$QDiFHtjZKu7UHCgB0SrvGOl8xLdiT7WFG3EgKHKMdh/soQS3ItnWK"),
        ("47686b636653564f6e6828404c477534", "$2a$06$jchjYme/spqNprPii85zqOECsLc./ME/TAj39qG8N6b3hYjbeIGAq"),
        (
            "713a636c4e3a782a285b213f51544c48392d633c3070716255482c7524464b23452b6c5536563b4578347a3b4976364d3c715f43573551385669643634666f4f374f7b7671553f59",
            "$2y$04$Mcus38hlh9RH4V8o9dtlpu12yS8eTvIop7BpKbJhgXOsL15C.vpOy"
        ),
        (
            "592b72494375755a4661525e3a2e3c416423726e2d5e7274386b535d69662f6a464e616c63525d46736c66364f5a6f7b7d5f",
            "$2a$05$kzxchFTV3rbq1C07bPP0mOOFaU0Mb2khc9b3kRz67K8XO0PSNR/gi"
        ),
        (
            "3c216550497a2668746f4e5b3e4b3c385d5163562e3838782f565e243e7a5b764c",
            "$2b$06$CVOw5gKO0elYGJQY5/g5E.sR1vwsdTrasmUvbCoRrXpknKDyb2Osi"
        ),
        ("5d", "$2a$04$LcG2PYE37oLc1qTenXW/v.eqBbqZ8sGaggYFPHFECzbAlpKI8ePZ2"),
        ("476f79362f", "$2b$05$IZiEH21UQfcWqW9zymR49eJrlIUR1r0tnCpgBqwpYHnhUGTOpuwsK"),
        (
            "4c5b6d4d72427775457343262533746b4f42762375244f324c29686b545539785a3d7226504b793c77375e7a734a582a5324294173363f35356d2c476a243a344e404d436e6c4545",
            "$2y$06$cPojLx6ar.hGxoBndugTd.BAiWsruZ49HFKiKnvebC44LwST49rJu"
        ),
    ]

    /// Passwords of 73, 100 and 200 bytes with the hash of their first 72 bytes; Python bcrypt
    /// 5.0.0's `checkpw` raises `ValueError` for the full password.
    static let longPasswords: [(passwordHex: String, hash: String)] = [
        (
            "646d62656c6569616863686a6a6e6b6664686a61626c68646a636a6b686666636c6d6e70696f68676f686e6a6b6c706d676d706c7064696f6b646b6c6b646c68696361646468646670",
            "$2b$04$9q32U8f0w4LI9aN0wv0iWOTUAmJBFWXj1cLMymSc/Yxf9fnJLHK/C"
        ),
        (
            "626665646570646d6c69706f6d6c646870696d6d6861626f67676d63706a6e61636d64686865656566696e6665616d656e636a636d70676462636e6f68616465636f6b64676b686c696d66686d6e6862646a6f617061666d6c61686a65686d6970666767",
            "$2b$04$KdOmeWnp4DSKG56rUIKXkuppcTF42tjfBBppEDxlA7eWP9An9IQuO"
        ),
        (
            "65616368706d6d62686266636368636f6d6a63656466696b637062666d686d6964616b686c66626262666a6b666d646a6b6b7069636b6c6b696c656c696b6f6d6d70686b696f646962706c676e69636d6e61686b61686a6b6d70626c6f6561696a636e6e616662626868636a70676c6767676d6c6e6c706661656e6f616a67666d666e6d696b61676c6a6c676c646c646d656563626e666c6c6b666e70706f6b706866666c6f656f6b6b68616a6b6b696166646f6a6f636f676c616967616f6a6e6d6e6f66646e6c",
            "$2b$04$HMImd7Cy3ja6Z8tPLWfoq.5AFqlBefKIadJYhJob2fgToxvaJwgxy"
        ),
    ]
}

// MARK: - Helpers

func bytes(hex: String) -> [UInt8] {
    let digits = Array(hex.utf8)
    return stride(from: 0, to: digits.count - 1, by: 2).compactMap {
        UInt8(String(decoding: digits[$0...$0 + 1], as: UTF8.self), radix: 16)
    }
}

func hexString(_ word: UInt32) -> String {
    let text = String(word, radix: 16, uppercase: true)
    return String(repeating: "0", count: 8 - text.count) + text
}
