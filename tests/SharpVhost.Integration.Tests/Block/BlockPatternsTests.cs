namespace SharpVhost.Integration.Tests.Block;

/// <summary>The host's pattern generator against values the guest's awk generator printed.</summary>
public sealed class BlockPatternsTests
{
    [Fact]
    public void Host_generator_matches_the_guest_generator()
    {
        // Printed by blk-test.sh in a guest with SV_SEED=7 for case 2 (64 KiB) and case 5 (3000 bytes).
        Assert.Equal("a531b111487833177bc46b2ebd36b166a642898d4eea41b454f35b99aa17a005",
            BlockPatterns.Sha256(BlockPatterns.Generate(7, BlockPatterns.Cases[2])));
        Assert.Equal("acc1878d31154d0af91c8ea6ecc1dcffac8626d9ed703c89b7d18b5cb864167c",
            BlockPatterns.Sha256(BlockPatterns.Generate(7, BlockPatterns.Cases[5])));
    }

    [Fact]
    public void Cases_do_not_overlap_and_fit_the_disk()
    {
        var sorted = BlockPatterns.Cases.OrderBy(c => c.Offset).ToList();
        for (var i = 0; i < sorted.Count; i++)
        {
            Assert.True(sorted[i].Offset + sorted[i].Length <= BlockPatterns.DiskBytes);
            if (i > 0) Assert.True(sorted[i - 1].Offset + sorted[i - 1].Length <= sorted[i].Offset);
            if (sorted[i].Direct) Assert.True(sorted[i].Offset % 512 == 0 && sorted[i].Length % 512 == 0);
        }
    }
}
