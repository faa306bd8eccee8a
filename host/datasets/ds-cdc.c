/* The Gear rolling hash with FastCDC's normalized chunking (dslib.h): the
 * content decides where a chunk ends, so an inserted row moves only the
 * cuts near it. */
#include "config.h"

#include <stdint.h>

#include "ds-internal.h"
#include "dslib.h"

/* 256 random 64-bit words: splitmix64 from the seed 0x4c6f6f6d44534745
 * ("LoomDSGE").  Fixed forever: changing one word changes every chunk
 * boundary and so every version id. */
static const uint64_t gear[256] = {
	0xf28480f129bb2c9eULL, 0x3389d447e99b5bc5ULL, 0x42e1f89b1c8ab54aULL,
	0xc0c38022f8c6e8ebULL, 0x11aad7cf7d708ddcULL, 0x6b7626f6b0339875ULL,
	0xd248abdcf0cb6304ULL, 0xc3af397d5afb0d7eULL, 0x828077b2d5942f60ULL,
	0x8edbfd2d04289da6ULL, 0x0815dc59204f0382ULL, 0x4dd6c41428a93fb6ULL,
	0x26fd8824bc248c3dULL, 0xcb937da553e11d2bULL, 0x42c1ce1ccbf52590ULL,
	0x462b51ae952aed06ULL, 0x02fb9ee43e2bdfafULL, 0x5faff61e9c3339a9ULL,
	0x80384a88b6fe3eefULL, 0x5c59cd96747b931eULL, 0x1acae10539808862ULL,
	0xe1f4ccc3ca6c2fd5ULL, 0xbbcc92f33ca2965bULL, 0xc4724f5dc248dcafULL,
	0xe22518221dfd0b29ULL, 0x91a9c5d76ea8f1cbULL, 0xaaff2ffacd235e1cULL,
	0x2c108e8bb95b549aULL, 0xab72dd51732c35e6ULL, 0x424654cb32fe10eeULL,
	0xb293b91d4c76ad0aULL, 0xc47073d3b8276fb4ULL, 0xbd92bae56fbf0d06ULL,
	0xa18dba87e396facfULL, 0xccb34dd44fa4b5a0ULL, 0xe35d4ff00dcddf76ULL,
	0xd885ec75e0a5066cULL, 0xd3e0e3b5d8711d23ULL, 0x870863af35c9d5d4ULL,
	0x7beff976f62ab33bULL, 0x0f0bde5eeb58c3b5ULL, 0xdd25fb8018f4642eULL,
	0x235f73d7d4d2a913ULL, 0xe76760756e78bfffULL, 0x0f4f5bcfeaed30b7ULL,
	0x5076f653e21198a4ULL, 0xd1377b73464fce36ULL, 0x5cec4e6aa2f81c37ULL,
	0xc6b1bd0c3fd9b3e2ULL, 0xc5e61ad08752a5c9ULL, 0x307af5aa8fbea5cdULL,
	0x3b6cdcefdd880ee8ULL, 0xc516c9fa2885ebf7ULL, 0xf6ba737ba3350696ULL,
	0xd9d3afec31c4ed2cULL, 0x03c753653dff9359ULL, 0xc5cf3ab2acd527a2ULL,
	0xd7efafc3727ff6e9ULL, 0x91c7c75044a32a9eULL, 0x1a902748efcb99ceULL,
	0x2e9b9919348821bfULL, 0xa220529d98e0caffULL, 0xe47ba6dc5f902d8fULL,
	0x9cefa27f6eb2d87cULL, 0xb7479b8ae7247580ULL, 0xb4a6f110dec92d4cULL,
	0x38ec32faff8f64cbULL, 0xc61e0fcf0c855163ULL, 0x256d6f3a59b5de6cULL,
	0x0283c8bc578f3141ULL, 0xcd6831e3ceec26e3ULL, 0xafbf5398ee2c893dULL,
	0x75b42e59e03de501ULL, 0xf16c118b5d47d941ULL, 0x6533dc566dd0ce1fULL,
	0xc1a7530436f3fc3dULL, 0x738c53da3410fcd8ULL, 0x42c99d6a9eb86948ULL,
	0x003b6d605575aa73ULL, 0xdb6e21eb70b83560ULL, 0x9188bd14698bd7acULL,
	0x7d42fb89ed32ec4cULL, 0x62c7c3746fcd9ed3ULL, 0xcc39eabdbf87931aULL,
	0xecc6780972953d77ULL, 0xee51b15c110e0ce2ULL, 0x199b5406daf9d943ULL,
	0x06eb015c1850e8b9ULL, 0x2786a45892a1c1cfULL, 0xa1c5df248ca05473ULL,
	0x44efa3186f3a9493ULL, 0x69284a2c89469b79ULL, 0x7f8cc75e8df6e66dULL,
	0x95f8c3477f522c16ULL, 0x7835b6451f490fadULL, 0x67fe6fcd0dda47dcULL,
	0x17f5d6433d1a85e1ULL, 0x0094562b1044291dULL, 0x53232c5eb04c4398ULL,
	0x0de2d7d72ef9cda8ULL, 0xb4f1304f7fd94054ULL, 0x2ace08fc9edb6307ULL,
	0x75f824368a3fb29cULL, 0xecce2c84316a37dcULL, 0xb0267bc285e58dd9ULL,
	0xc165d2d220a897a7ULL, 0x9f5db3e9775d35dcULL, 0x1bc63538215ea722ULL,
	0xef52f0aa3dd34929ULL, 0xc2696542ebc5a8e8ULL, 0x9994121f5e3b89deULL,
	0xcaaa0bb9b82d4ecaULL, 0x332dbd38fd2a5136ULL, 0x4cf812f0e3bbb3e8ULL,
	0xb4877551e5932314ULL, 0x27272122aee907b9ULL, 0x784cf7bb6128640eULL,
	0x93dd01a0d09c5fe6ULL, 0xe488b9682dc64722ULL, 0x74c0e103f32da9b2ULL,
	0xf1818b1c85eaaa04ULL, 0x99dc249ac9ff274aULL, 0x728f9e4d257b62b8ULL,
	0xc8301c61d548347eULL, 0x11ca1bdeb8697931ULL, 0x3f5dda037c4ab7d0ULL,
	0x3428791bb8f0846eULL, 0x796e8f2e08b4dc0fULL, 0xe4eff5dcc2f3ce33ULL,
	0x387853de8b1f0057ULL, 0xf89fa479d7e15a21ULL, 0x92d68bf404e2d7feULL,
	0x2d893c4b7f53ee29ULL, 0x70cd4afe9655cf0cULL, 0x0496b41b6b266a6cULL,
	0xfd2f53d368f61cf9ULL, 0x965f09e34a66afb4ULL, 0xf7956c89b998f820ULL,
	0xea29d09ce5402261ULL, 0x5388951095b5f487ULL, 0xff11cf693b3762d4ULL,
	0xd651465fc59fdd95ULL, 0xe427ec567f7f5b8fULL, 0x203cb92d68f49fedULL,
	0xd5a55c4ddbc12754ULL, 0x8b1a988e7771a040ULL, 0x2c9f30a140426f89ULL,
	0xfda8a8b6911a8fedULL, 0x99efb60c8d590358ULL, 0x955b049862b6ace4ULL,
	0x6eefbc0c55d9ebc3ULL, 0x8aaf8b3e09be6a7fULL, 0xa5d492bac47b2736ULL,
	0xdda5ef4935215de4ULL, 0xc460944432364e0bULL, 0x749a7d6ac92df4ffULL,
	0xbd345039c3c4c87fULL, 0xf458a1f299072bc8ULL, 0xe0807df30aad7be9ULL,
	0x7024759d67ea7422ULL, 0xc38ba9bf235a9e27ULL, 0xdb70029c1b23f723ULL,
	0x3a81287116185d61ULL, 0x1a6db8c43250a503ULL, 0x8341071ba974a4b3ULL,
	0xeb5c9e0a85e29ab2ULL, 0x379eb7c4579c3ec2ULL, 0x5e159dd1b859dcfaULL,
	0x33b871f5c22a7e92ULL, 0x6728388183f2e5edULL, 0xd4f616b62fa631aeULL,
	0x4429f4990394ef14ULL, 0x26da563333f03e32ULL, 0x6f1556db25e8ecc0ULL,
	0xa3e784fd8dd8cefbULL, 0x1c59e018716e74ecULL, 0xcf3315869dcf085eULL,
	0x7f5b17dec4304529ULL, 0x436b2e60c6a495c0ULL, 0xe3b0a2e1a54df24fULL,
	0xa6837c9884310b79ULL, 0xad1e6bd243e0abc2ULL, 0x0b768cd6bcfa15fbULL,
	0x36640645d3203d7cULL, 0x952d3a3d97e3c6fcULL, 0xf5f0a527fc6d2aedULL,
	0xb5b925bae81fd9c0ULL, 0x9db496daa68057abULL, 0xf189f2dbe2001e81ULL,
	0x1226b1912474b8feULL, 0xbd73838c72ebecf5ULL, 0xe1134c053a635a6bULL,
	0x1e607fe690f9bea8ULL, 0xc6fe462ae2463090ULL, 0x099a3a7c72c10e12ULL,
	0xcd715ed45626d555ULL, 0xe097d6f66cd03945ULL, 0x2b2c3a049108bcddULL,
	0x2a0caf07d72ce33aULL, 0xe7d7cfeac27a7005ULL, 0x96b6296a943ff256ULL,
	0xa79b600fdee9d9bcULL, 0x83e55cd5146c5335ULL, 0xf6303f92204c0197ULL,
	0x2eb60e35ea1856a1ULL, 0xe1ea4376287680ecULL, 0xfc9698db131a4014ULL,
	0x6921a0d4c9fd95b9ULL, 0x6de9d9b1e8a285feULL, 0x341bf4dc1d98739aULL,
	0x916987a604d231b0ULL, 0x72807c2283584d3bULL, 0x5514905f0f792a8fULL,
	0xed96893493442e96ULL, 0x1f38786352080fa4ULL, 0x3ef43d77039b5be0ULL,
	0x9cc9175e84c258d7ULL, 0x22f299794d8138bfULL, 0xae228ad3ff1be989ULL,
	0x65f7696a004a7a6dULL, 0x201293bcb752c20bULL, 0x6d07a2a369539907ULL,
	0x8abca6d2d2da56bfULL, 0x8f9e6a9004e253ddULL, 0x5e4aed1675d10b04ULL,
	0xf7e9059ee2de35e1ULL, 0xbb17226a4b07e05dULL, 0x39f7f11ac16cb35fULL,
	0xb786ccbadf24139eULL, 0x755d8562f98d2475ULL, 0x0061171ae8eb5a33ULL,
	0xafcb3d4fc7e8ce3fULL, 0xd1e407d691fd0259ULL, 0x81ec04445466a08eULL,
	0x8581036067d47a23ULL, 0x67cd2213ab7c1f1aULL, 0x21d0a768a177092dULL,
	0xdd5e4058e82141b2ULL, 0x023357012c5b8112ULL, 0xdc8bdc031ebd126dULL,
	0xfbbae0204453cf52ULL, 0x42a41bf49877daf9ULL, 0x8e367141de66c974ULL,
	0x2a1f16559d8decf5ULL, 0xbfb94b95f6d568fdULL, 0x5576879c714a4412ULL,
	0xdb4abd87f7015df7ULL, 0xea142a921648634eULL, 0x4f6cd7e974a0fa56ULL,
	0x3749c600a558d2d5ULL, 0xf3d85c9817b8cccdULL, 0x59faedb61917e38fULL,
	0x972ab0e4b46f2c90ULL, 0xdeb999e5357fe2b2ULL, 0x7faaa36d4170580aULL,
	0xe993985c2fc4860fULL,
};

static unsigned
log2u(size_t v)
{
	unsigned b = 0;

	while (v > 1) {
		v >>= 1;
		b++;
	}
	return b;
}

/* A mask of the n high bits: fp << 1 shifts old bytes out at the top, so
 * the high bits depend on the last 64 bytes (the window), the low ones on
 * the last few only. */
static uint64_t
high_mask(unsigned n)
{
	if (n == 0)
		return 0;
	if (n >= 64)
		return ~(uint64_t)0;
	return ~(uint64_t)0 << (64 - n);
}

void
ds_cdc_init(ds_cdc *c, const ds_params *p)
{
	unsigned bits = log2u(p->avg_size);

	c->fp = 0;
	c->min = p->min_size;
	c->avg = p->avg_size;
	c->max = p->max_size;
	/* normalization level 2: a cut is 16 times less likely before avg
	 * and 16 times more likely after it than at 1/avg */
	c->mask_s = high_mask(bits + 2);
	c->mask_l = high_mask(bits > 2 ? bits - 2 : 1);
}

size_t
ds_cdc_scan(ds_cdc *c, const uint8_t *chunk, size_t from, size_t to)
{
	size_t i = from > c->min ? from : c->min;
	size_t end = to < c->avg ? to : c->avg;
	uint64_t fp = c->fp;

	for (; i < end; i++) {
		fp = (fp << 1) + gear[chunk[i]];
		if ((fp & c->mask_s) == 0) {
			c->fp = fp;
			return i + 1;
		}
	}
	end = to < c->max ? to : c->max;
	for (; i < end; i++) {
		fp = (fp << 1) + gear[chunk[i]];
		if ((fp & c->mask_l) == 0) {
			c->fp = fp;
			return i + 1;
		}
	}
	c->fp = fp;
	return to >= c->max ? c->max : 0;
}

size_t
ds_cdc_cut(const ds_params *p, const uint8_t *data, size_t len)
{
	ds_cdc c;
	size_t cut;

	ds_cdc_init(&c, p);
	cut = ds_cdc_scan(&c, data, 0, len);
	return cut != 0 && cut <= len ? cut : len;
}
