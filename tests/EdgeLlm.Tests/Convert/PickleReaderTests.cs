using System.Text;
using EdgeLlm.Convert.Sources;
using EdgeLlm.TestSupport;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// The checkpoint pickle interpreter: torch.save-style state dicts load to the right tensors; anything outside
/// the whitelist (a GLOBAL such as os.system, a REDUCE on something that is not the tensor rebuild function or
/// OrderedDict, an opcode a checkpoint does not need) is refused with a one-line error naming it and its offset,
/// and nothing is run.
/// </summary>
public class PickleReaderTests
{
    /// <summary>Builds pickle bytes from opcode characters and raw strings.</summary>
    private sealed class P
    {
        private readonly List<byte> _b = [0x80, 2];
        public P Op(char c) { _b.Add((byte)c); return this; }
        public P Op(byte b) { _b.Add(b); return this; }
        public P Global(string module, string name) { _b.Add((byte)'c'); _b.AddRange(Encoding.ASCII.GetBytes($"{module}\n{name}\n")); return this; }
        public P Str(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            _b.Add((byte)'X'); _b.AddRange(BitConverter.GetBytes(b.Length)); _b.AddRange(b);
            return this;
        }
        public P Int1(byte v) { _b.Add((byte)'K'); _b.Add(v); return this; }
        public int Offset => _b.Count;
        public byte[] Bytes => [.. _b];
    }

    private static EdgeLlmException Refuses(byte[] pickle, string message, int? offset = null)
    {
        var e = Assert.Throws<EdgeLlmException>(() => PickleReader.Load("x/data.pkl", pickle));
        Assert.Contains(message, e.Message);
        Assert.StartsWith("x/data.pkl: pickle offset ", e.Message);
        if (offset is not null) Assert.StartsWith($"x/data.pkl: pickle offset {offset}: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void A_torch_state_dict_loads_in_order_with_its_storages()
    {
        // 300 tensors: memo ids pass 255, so LONG_BINPUT / LONG_BINGET are exercised too.
        var tensors = new List<PickledTensor>();
        for (int i = 0; i < 300; i++)
            tensors.Add(new($"layers.{i}.w", i.ToString(), (SourceDType)(i % 3), i % 2 == 0 ? [i + 1, 3] : [i + 1]));
        tensors.Add(new("big", "big", SourceDType.BF16, [1L << 33, 2])); // LONG1 element count
        var bytes = TorchPickleWriter.StateDict(tensors);
        var state = PickleReader.LoadStateDict("t", bytes);
        Assert.Equal(tensors.Count, state.Count);
        for (int i = 0; i < tensors.Count; i++)
        {
            var (name, t) = state[i];
            Assert.Equal(tensors[i].Name, name);
            Assert.Equal(tensors[i].Shape, t.Size);
            Assert.Equal(tensors[i].StorageKey, t.Storage.Key);
            Assert.Equal(tensors[i].DType, t.Storage.DType);
            Assert.Equal("cpu", t.Storage.Location);
            Assert.Equal(t.Numel, t.Storage.Numel);
            Assert.Equal(0, t.StorageOffset);
            Assert.True(t.IsContiguous);
        }
        Assert.Equal(1L << 34, state[^1].Value.Storage.Numel);
    }

    [Fact]
    public void A_GLOBAL_outside_the_whitelist_is_refused_and_nothing_runs()
    {
        string marker = TestPaths.TempFile("pwned");
        var p = new P();
        int at = p.Offset;
        p.Global("os", "system").Str("touch " + marker).Op((char)0x85).Op('R').Op('.');
        Refuses(p.Bytes, "GLOBAL 'os.system' is not allowed, refused without running anything", at);
        Assert.False(File.Exists(marker));

        foreach (var (m, n) in new[] { ("builtins", "eval"), ("__builtin__", "getattr"), ("torch", "load"), ("torch._utils", "_rebuild_parameter"), ("collections", "OrderedDictX"), ("torch", "IntStorage") })
            Refuses(new P().Global(m, n).Op('.').Bytes, $"GLOBAL '{m}.{n}' is not allowed", 2);
    }

    [Fact]
    public void A_REDUCE_on_a_callable_outside_the_whitelist_is_refused()
    {
        // A storage class is whitelisted as a name, but may not be called.
        var p = new P().Global("torch", "HalfStorage").Op(')');
        int at = p.Offset;
        Refuses(p.Op('R').Op('.').Bytes, "REDUCE on 'torch.HalfStorage' is not allowed, refused without running anything", at);
        Refuses(new P().Str("os.system").Op(')').Op('R').Op('.').Bytes, "REDUCE on a str 'os.system' (not a callable) is not allowed");
        Refuses(new P().Global("collections", "OrderedDict").Str("x").Op((char)0x85).Op('R').Op('.').Bytes, "REDUCE on 'collections.OrderedDict' with 1 arguments");
        Refuses(new P().Global("torch._utils", "_rebuild_tensor_v2").Op(')').Op('R').Op('.').Bytes, "_rebuild_tensor_v2 with 0 arguments");
    }

    [Theory]
    [InlineData(0x93, "STACK_GLOBAL")]
    [InlineData((byte)'i', "INST")]
    [InlineData((byte)'o', "OBJ")]
    [InlineData(0x81, "NEWOBJ")]
    [InlineData(0x82, "EXT1")]
    [InlineData((byte)'P', "PERSID")]
    [InlineData((byte)'0', "POP")]
    [InlineData(0xff, "unknown")]
    public void Opcodes_a_checkpoint_does_not_need_are_refused_by_name(byte op, string name) =>
        Refuses(new P().Op(')').Op(op).Op('.').Bytes, $"opcode 0x{op:x2} ({name}) is not allowed", 3);

    [Fact]
    public void Malformed_pickles_are_one_line_errors()
    {
        Refuses(new P().Op(')').Bytes, "ends without STOP");
        Refuses(new P().Op('X').Op(5).Op(0).Op(0).Op(0).Op('a').Bytes, "string of 5 bytes but only 1 are left");
        Refuses(new P().Op('h').Op(7).Op('.').Bytes, "memo entry 7 was never stored");
        Refuses(new P().Op('.').Bytes, "pop from an empty stack");
        Refuses(new P().Op(')').Op(')').Op('.').Bytes, "STOP with 1 values");
        Refuses(new P().Op('(').Op('t').Op(')').Op('s').Op('.').Bytes, "no object below the arguments");
        Refuses(new P().Op(']').Int1(1).Int1(2).Op('s').Op('.').Bytes, "SETITEM on a list (not a dict)");
        Refuses(new P().Op('}').Int1(1).Op('a').Op('.').Bytes, "APPEND on a dict (not a list)");
        Refuses(new P().Op(0x80).Op(9).Op('.').Bytes, "pickle protocol 9 is not supported");
        Refuses(new P().Op(0x8a).Op(9).Op('.').Bytes, "LONG1 of 9 bytes does not fit in 64 bits");
        Refuses(new P().Op(']').Op('}').Op('b').Op('.').Bytes, "BUILD on a list is not allowed");
        Refuses(new P().Str("x").Op('Q').Op('.').Bytes, "persistent id str 'x' is not a ('storage', type, key, location, numel) tuple");
        var deep = new P();
        for (int i = 0; i < 300; i++) deep.Op('(');
        Refuses(deep.Bytes, $"more than {PickleReader.MaxMarkDepth} nested MARKs");
    }

    [Fact]
    public void LONG1_and_small_ints_decode_with_sign()
    {
        Assert.Equal(-1L, PickleReader.Load("t", new P().Op(0x8a).Op(1).Op(0xff).Op('.').Bytes));
        Assert.Equal(255L, PickleReader.Load("t", new P().Op(0x8a).Op(2).Op(0xff).Op(0).Op('.').Bytes));
        Assert.Equal(0L, PickleReader.Load("t", new P().Op(0x8a).Op(0).Op('.').Bytes));
        Assert.Equal(long.MinValue, PickleReader.Load("t", new P().Op(0x8a).Op(8).Op(0).Op(0).Op(0).Op(0).Op(0).Op(0).Op(0).Op(0x80).Op('.').Bytes));
        Assert.Equal(-2L, PickleReader.Load("t", new P().Op('J').Op(0xfe).Op(0xff).Op(0xff).Op(0xff).Op('.').Bytes));
        Assert.Equal(0x1234L, PickleReader.Load("t", new P().Op('M').Op(0x34).Op(0x12).Op('.').Bytes));
        Assert.Equal(1.5, PickleReader.Load("t", new P().Op('G').Op(0x3f).Op(0xf8).Op(0).Op(0).Op(0).Op(0).Op(0).Op(0).Op('.').Bytes));
        Assert.Equal("h\u00e9", PickleReader.Load("t", new P().Op('U').Op(2).Op((byte)'h').Op(0xe9).Op('.').Bytes));
        var list = Assert.IsType<List<object?>>(PickleReader.Load("t", new P().Op(']').Op('(').Op('N').Op(0x88).Op(0x89).Op('e').Op('.').Bytes));
        Assert.Equal([null, true, false], list);
    }

    [Fact]
    public void Tensor_views_must_stay_inside_their_storage()
    {
        // _rebuild_tensor_v2(storage of 6 elements, offset 1, size (2, 3), stride (3, 1), False, OrderedDict()):
        // the last element is 1 + 3 + 2 = 6, one past the storage.
        var p = new P().Global("torch._utils", "_rebuild_tensor_v2").Op('(')
            .Op('(').Str("storage").Global("torch", "FloatStorage").Str("0").Str("cpu").Int1(6).Op('t').Op('Q')
            .Int1(1).Int1(2).Int1(3).Op(0x86).Int1(3).Int1(1).Op(0x86).Op(0x89)
            .Global("collections", "OrderedDict").Op(')').Op('R').Op('t').Op('R').Op('.');
        Refuses(p.Bytes, "tensor view reaches element 6 of storage '0' which has 6 elements");
    }

    [Fact]
    public void A_state_dict_must_map_strings_to_tensors()
    {
        var e = Assert.Throws<EdgeLlmException>(() => PickleReader.LoadStateDict("t", new P().Op('}').Str("a").Int1(1).Op('s').Op('.').Bytes));
        Assert.Equal("t: state dict entry 'a' is a int, not a tensor", e.Message);
        e = Assert.Throws<EdgeLlmException>(() => PickleReader.LoadStateDict("t", new P().Op(']').Op('.').Bytes));
        Assert.Equal("t: the pickle holds a list, not a state dict", e.Message);
    }
}
