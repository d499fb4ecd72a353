//go:build !noaws

package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws"
)

func TestAWSConfig(t *testing.T) {
	in := config.AWS{Region: "eu-west-1", Credentials: "default", RateLimit: 20, AssumeRole: &config.AssumeRole{
		RoleARN: "arn:aws:iam::123456789012:role/phase", ExternalID: "ext", SessionName: "phase-sidecar",
		Duration: time.Hour, SourceIdentity: "phase",
	}}
	// Every field is set, so a field added to config.AWS fails here until
	// awsConfig carries it.
	for _, v := range []reflect.Value{reflect.ValueOf(in), reflect.ValueOf(*in.AssumeRole)} {
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Fatalf("%s.%s is not set in the test", v.Type(), v.Type().Field(i).Name)
			}
		}
	}
	want := aws.Config{Region: "eu-west-1", Credentials: aws.CredentialsDefault, RateLimit: 20, AssumeRole: &aws.AssumeRole{
		RoleARN: "arn:aws:iam::123456789012:role/phase", ExternalID: "ext", SessionName: "phase-sidecar",
		Duration: time.Hour, SourceIdentity: "phase",
	}}
	if got := awsConfig(&in); !reflect.DeepEqual(got, want) {
		t.Errorf("awsConfig:\n got %+v %+v\nwant %+v %+v", got, got.AssumeRole, want, want.AssumeRole)
	}
	if got := awsConfig(&config.AWS{Credentials: "imds"}); !reflect.DeepEqual(got, aws.Config{Credentials: aws.CredentialsIMDS}) {
		t.Errorf("awsConfig without assume_role = %+v", got)
	}
	// No sources.aws (Vault's aws login alone): the defaults.
	if got := awsConfig(nil); !reflect.DeepEqual(got, aws.Config{Credentials: aws.CredentialsIMDS}) {
		t.Errorf("awsConfig(nil) = %+v", got)
	}
}
