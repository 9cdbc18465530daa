import MitmIO
import Testing

@Test func moduleLoads() {
    #expect(String(describing: MitmIO.self) == "MitmIO")
}
