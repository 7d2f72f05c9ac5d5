package mask

import "strings"

// safeFuncs are built-in functions whose result is computed from their arguments (and
// constants or the clock) only: they read no table, file, setting, large object or
// other session. A call to any other function is opaque. Missing a harmless built-in
// here only over-masks; adding one that reads state (current_setting, query_to_xml,
// pg_read_file, lo_get, dblink, currval...) would under-mask, so it must not be listed.
var safeFuncs = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(`
abs acos asin atan atan2 cbrt ceil ceiling cos cot degrees div exp factorial floor gcd lcm ln log log10
mod pi power radians random round scale sign sin sqrt tan trunc width_bucket min_scale trim_scale
greatest least nullif coalesce num_nonnulls num_nulls
ascii bit_length btrim char_length character_length chr concat concat_ws convert convert_from convert_to
decode encode format initcap left length lower lpad ltrim md5 octet_length overlay position quote_ident
quote_literal quote_nullable regexp_count regexp_instr regexp_like regexp_match regexp_matches regexp_replace
regexp_split_to_array regexp_split_to_table regexp_substr repeat replace reverse right rpad rtrim sha224
sha256 sha384 sha512 split_part starts_with string_to_array string_to_table strpos substr substring
to_ascii to_hex translate trim upper normalize unistr casefold
get_byte set_byte get_bit set_bit bit_count crc32 crc32c
to_char to_date to_number to_timestamp age clock_timestamp current_date current_time current_timestamp
date_bin date_part date_trunc extract isfinite justify_days justify_hours justify_interval localtime
localtimestamp make_date make_interval make_time make_timestamp make_timestamptz now statement_timestamp
timeofday transaction_timestamp timezone date_add date_subtract
array_agg array_append array_cat array_dims array_fill array_length array_lower array_ndims array_position
array_positions array_prepend array_remove array_replace array_to_string array_upper cardinality
trim_array unnest generate_series generate_subscripts array_sample array_shuffle
avg bit_and bit_or bit_xor bool_and bool_or count every max min sum string_agg json_agg jsonb_agg
json_object_agg jsonb_object_agg json_agg_strict jsonb_agg_strict json_object_agg_strict
jsonb_object_agg_strict json_object_agg_unique jsonb_object_agg_unique json_arrayagg json_objectagg
stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp mode percentile_cont
percentile_disc range_agg range_intersect_agg xmlagg any_value
row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
to_json to_jsonb row_to_json array_to_json json_build_array jsonb_build_array json_build_object
jsonb_build_object json_object jsonb_object json_array_length jsonb_array_length json_each jsonb_each
json_each_text jsonb_each_text json_extract_path jsonb_extract_path json_extract_path_text
jsonb_extract_path_text json_object_keys jsonb_object_keys json_array_elements jsonb_array_elements
json_array_elements_text jsonb_array_elements_text json_typeof jsonb_typeof json_strip_nulls
jsonb_strip_nulls jsonb_set jsonb_set_lax jsonb_insert jsonb_pretty jsonb_path_query jsonb_path_query_array
jsonb_path_query_first jsonb_path_exists jsonb_path_match json_populate_record jsonb_populate_record
json_populate_recordset jsonb_populate_recordset json_to_record jsonb_to_record json_to_recordset
jsonb_to_recordset json_scalar json_serialize
xmlelement xmlforest xmlconcat xmlparse xmlserialize xmlroot xmlcomment xmltext xpath xpath_exists
text textlen int2 int4 int8 float4 float8 numeric bool bpchar varchar date time timestamp timestamptz
interval bytea inet cidr host masklen netmask network family abbrev broadcast hostmask uuid
gen_random_uuid uuidv4 uuidv7 version pg_typeof pg_column_size
lower_inc upper_inc lower_inf upper_inf isempty range_merge int4range int8range numrange daterange
tsrange tstzrange
`) {
		m[f] = true
	}
	return m
}()
