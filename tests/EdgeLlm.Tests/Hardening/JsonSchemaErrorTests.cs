using System.Text;
using System.Text.Json;
using EdgeLlm.Generation;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Hardening;

/// <summary>
/// JSON-schema errors as users see them (<c>run --json-schema FILE</c>, the server's response_format): one line saying
/// where (line and byte from 1, or the schema path) and what, never System.Text.Json's own text. Before: a schema that
/// did not parse showed the reader's message ("ExpectedStartOfPropertyOrValueNotFound LineNumber: 0 |
/// BytePositionInLine: 16." in the AOT build, positions from 0), and a string or member name with an unpaired
/// \uD800-\uDFFF escape was "internal error: InvalidOperationException: CannotReadIncompleteUTF16".
/// </summary>
public class JsonSchemaErrorTests
{
    private static string Refusal(string schema)
    {
        var e = Assert.Throws<GrammarException>(() => JsonSchemaCompiler.Compile(schema));
        Assert.DoesNotContain('\n', e.Message);
        foreach (string raw in new[] { "LineNumber", "BytePositionInLine", "Expected", "DepthTooLarge", "UTF16", "Exception" })
            Assert.DoesNotContain(raw, e.Message, StringComparison.Ordinal);
        return e.Message;
    }

    [Theory]
    [InlineData("{\"type\":\"object\",", "at line 1, byte 17 (a syntax error)")]
    [InlineData("[", "at line 1, byte 2 (a syntax error)")]
    [InlineData("{\n  \"type\": }", "at line 2, byte 11 (a syntax error)")]
    [InlineData("{\"type\":\"string\"} x", "at line 1, byte 19 (a syntax error)")]
    [InlineData("", "at line 1, byte 1 (the file is empty)")]
    [InlineData("  \n ", "at line 2, byte 2 (the file is empty)")]
    public void A_schema_that_does_not_parse_says_where(string schema, string where)
    {
        Assert.Equal($"the JSON schema is not valid JSON {where}", Refusal(schema));
    }

    [Theory]
    [InlineData(65, true)]
    [InlineData(200, true)]
    [InlineData(65, false)]
    public void A_schema_nested_too_deep_says_so(int depth, bool arrays)
    {
        string schema = arrays
            ? new string('[', depth) + new string(']', depth)
            : string.Concat(Enumerable.Repeat("{\"items\":", depth - 1)) + "{}" + new string('}', depth - 1);
        string m = Refusal(schema);
        Assert.StartsWith("the JSON schema is not valid JSON at line 1, byte ", m);
        Assert.EndsWith("(it nests arrays and objects more than 64 deep)", m);
    }

    [Fact]
    public void Sixty_four_levels_still_compile()
    {
        // 64 nested objects: the most System.Text.Json reads by default, and the refusal above starts at 65.
        string schema = string.Concat(Enumerable.Repeat("{\"items\":", 63)) + "{}" + new string('}', 63);
        Assert.NotNull(JsonSchemaCompiler.Compile(schema));
    }

    [Theory]
    [InlineData("{\"enum\":[\"a\",\"\\ud800\"]}", "JSON schema at #/enum/1: a string is not valid text")]
    [InlineData("{\"const\":{\"k\":\"x\\udfff\"}}", "JSON schema at #/const/k: a string is not valid text")]
    [InlineData("{\"type\":\"object\",\"properties\":{\"ok\":{},\"\\udc00b\":{\"type\":\"string\"}}}", "JSON schema at #/properties: the name of member 1 is not valid text")]
    [InlineData("{\"title\":\"\\ud83d\",\"type\":\"string\"}", "JSON schema at #/title: a string is not valid text")]
    public void A_string_that_is_not_text_is_named_by_its_path(string schema, string start)
    {
        string m = Refusal(schema);
        Assert.Equal(start + " (an unpaired \\uD800-\\uDFFF escape or invalid UTF-8)", m);
        // the same from a parsed element (the server's response_format path)
        using var doc = JsonDocument.Parse(schema);
        Assert.Equal(m, Assert.Throws<GrammarException>(() => JsonSchemaCompiler.Compile(doc.RootElement)).Message);
    }

    [Fact]
    public void A_paired_surrogate_escape_is_text()
    {
        var g = JsonSchemaCompiler.Compile("{\"enum\":[\"\\ud83d\\ude00\"]}");
        Assert.NotNull(g);
    }

    // ---- the CLI: run --json-schema FILE ----

    private static CliRunner.Result Run(string schemaFile) =>
        CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "-p", "hi", "-n", "1", "--json-schema", schemaFile);

    private static string OneErrorLine(CliRunner.Result r)
    {
        Assert.Equal(1, r.ExitCode);
        string[] lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "expected one line: " + r.Stderr);
        Assert.DoesNotContain("internal error", lines[0]);
        return lines[0];
    }

    [Fact]
    public void Run_names_the_file_and_the_position()
    {
        string file = TestPaths.TempFile("truncated-schema.json");
        File.WriteAllText(file, "{\n  \"type\": \"object\",\n  \"properties\": {\"a\": }\n}");
        Assert.Equal($"edgellm run: error: {file}: the JSON schema is not valid JSON at line 3, byte 23 (a syntax error)", OneErrorLine(Run(file)));
    }

    [Fact]
    public void Run_names_the_path_of_a_string_that_is_not_text()
    {
        string file = TestPaths.TempFile("surrogate-schema.json");
        File.WriteAllText(file, "{\"type\":\"object\",\"properties\":{\"\\ud800\":{\"type\":\"string\"}}}");
        Assert.Equal($"edgellm run: error: {file}: JSON schema at #/properties: the name of member 0 is not valid text (an unpaired \\uD800-\\uDFFF escape or invalid UTF-8)",
            OneErrorLine(Run(file)));
    }

    [Fact]
    public void Run_says_a_directory_is_not_a_schema_file()
    {
        string dir = TestPaths.TempFile("schema-dir");
        Directory.CreateDirectory(dir);
        Assert.Equal($"edgellm run: error: {dir}: a directory, not a JSON schema file", OneErrorLine(Run(dir)));
    }

    [Fact]
    public void Run_reads_a_file_that_is_not_UTF8_as_a_syntax_error()
    {
        string file = TestPaths.TempFile("binary-schema.json");
        File.WriteAllBytes(file, [0xFF, 0xFE, (byte)'{', (byte)'}']);
        Assert.Equal($"edgellm run: error: {file}: the JSON schema is not valid JSON at line 1, byte 1 (a syntax error)", OneErrorLine(Run(file)));
    }
}
